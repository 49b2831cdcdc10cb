import Foundation
import Testing
import VirtMeterCore
import VirtMeterTestSupport

@Suite("virtmeter run with declared meters")
struct DeclaredMetersRunTests {
    /// A virtmeter.yaml with `meters_dir` and polling.yaml every 0.3 s of `meters`.
    func setUp(_ directory: URL, meters: String) throws -> URL {
        let metersDirectory = directory.appendingPathComponent("meters.d")
        try FileManager.default.createDirectory(at: metersDirectory, withIntermediateDirectories: true)
        let polling = directory.appendingPathComponent("polling.yaml")
        try "sources:\n  - name: a\n    interval: 0.3\n    meters: [\(meters)]\n"
            .write(to: polling, atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("virtmeter.yaml")
        try ("libvirt_uri: '\(testNodeURI)'\npolling_file: '\(polling.path)'\n"
             + "meters_dir: '\(metersDirectory.path)'\npublishers:\n  - type: stdout\n")
            .write(to: config, atomically: true, encoding: .utf8)
        return config
    }

    static let declared = "meters:\n  - name: domain.state.declared\n    type: gauge\n    unit: state\n"
        + "    summary: libvirt's state number\n    field: state.state\n"

    @Test("declared meters are polled; SIGHUP with a broken file keeps them and logs the one line why")
    func reloadKeepsMeters() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try setUp(directory, meters: "vcpus, domain.state.declared")
        let file = directory.appendingPathComponent("meters.d/state.yaml")
        try Self.declared.write(to: file, atomically: true, encoding: .utf8)
        let agent = try runningAgent(["--config", config.path], directory: directory)
        defer {
            agent.process.terminate()
            agent.process.waitUntilExit()
        }
        try await Task.sleep(for: .seconds(1.5))
        #expect(agent.meters() == ["vcpus", "domain.state.declared"], "\(agent.stderr)")
        let samples = agent.samples()
            .filter { $0["counter_name"]?.stringValue == "domain.state.declared" }
        #expect(!samples.isEmpty && samples.allSatisfy { $0["counter_volume"] == .int(1) })
        #expect(samples.allSatisfy { $0["counter_unit"]?.stringValue == "state" })

        try (Self.declared + "    colour: red\n").write(to: file, atomically: true, encoding: .utf8)
        kill(agent.process.processIdentifier, SIGHUP)
        try await Task.sleep(for: .seconds(1))
        let before = agent.stdout.split(separator: "\n").filter { $0.contains("domain.state.declared") }.count
        try await Task.sleep(for: .seconds(1))
        let after = agent.stdout.split(separator: "\n").filter { $0.contains("domain.state.declared") }.count
        #expect(after > before, "the declared meter goes on after a failed reload")
        #expect(agent.stderr.contains("reload failed")
                && agent.stderr.contains("\(file.path):7: meters[0].colour: unknown key"), "\(agent.stderr)")

        try Self.declared.replacingOccurrences(of: "domain.state.declared", with: "domain.state.renamed")
            .write(to: file, atomically: true, encoding: .utf8)
        try "sources:\n  - name: a\n    interval: 0.3\n    meters: [domain.state.renamed]\n"
            .write(to: directory.appendingPathComponent("polling.yaml"), atomically: true, encoding: .utf8)
        kill(agent.process.processIdentifier, SIGHUP)
        try await Task.sleep(for: .seconds(1.5))
        #expect(agent.meters().contains("domain.state.renamed"), "a good file is taken on SIGHUP")
        #expect(agent.stderr.contains("virtmeter.config.declared_meters=1"))
    }

    @Test("a broken declaration stops start-up with one line naming file, line and key")
    func refuseToStart() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try setUp(directory, meters: "vcpus")
        let file = directory.appendingPathComponent("meters.d/state.yaml")
        try Self.declared.replacingOccurrences(of: "type: gauge", with: "type: counter")
            .write(to: file, atomically: true, encoding: .utf8)
        let agent = try runningAgent(["--config", config.path], directory: directory)
        agent.process.waitUntilExit()
        #expect(agent.process.terminationStatus != 0)
        #expect(agent.stderr == "virtmeter: \(file.path):3: meters[0].type: unknown type 'counter' "
                + "(known: gauge, cumulative, delta)\n")
    }
}

import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterCore

/// Runs `virtmeter` with `arguments` to its end.
func virtmeter(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    try runProgram(virtmeterBinary, arguments)
}

/// `virtmeter run` with `arguments` and its state in `directory`, its output in files there.
func runningAgent(_ arguments: [String], directory: URL) throws -> LoggedProcess {
    try LoggedProcess(virtmeterBinary, ["run", "--state-dir", directory.appendingPathComponent("state").path]
                      + arguments, directory: directory)
}

extension LoggedProcess {
    /// The meters of the samples printed so far.
    func meters() -> Set<String> { Set(samples().compactMap { $0["counter_name"]?.stringValue }) }
}

@Suite("virtmeter run")
struct RunCommandTests {
    @Test("SIGHUP reloads polling.yaml; a bad file keeps the sources in use and says why")
    func reload() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let polling = directory.appendingPathComponent("polling.yaml")
        try "sources:\n  - name: a\n    interval: 0.3\n    meters: [vcpus]\n".write(to: polling, atomically: true,
                                                                                encoding: .utf8)
        let agent = try runningAgent(["--connect", testNodeURI, "--polling", polling.path, "--publish", "stdout"],
                                     directory: directory)
        try await Task.sleep(for: .seconds(1.5))
        #expect(agent.meters() == ["vcpus"])

        try "sources:\n  - name: a\n    interval: 0.3\n    meters: [power.state]\n".write(to: polling, atomically: true,
                                                                                    encoding: .utf8)
        kill(agent.process.processIdentifier, SIGHUP)
        try await Task.sleep(for: .seconds(1.5))
        #expect(agent.meters().contains("power.state"))
        #expect(agent.stderr.contains("polling.yaml reloaded"))

        try "sources:\n  - name: a\n    interval: soon\n".write(to: polling, atomically: true, encoding: .utf8)
        kill(agent.process.processIdentifier, SIGHUP)
        try await Task.sleep(for: .seconds(1))
        let before = agent.stdout.split(separator: "\n").count
        try await Task.sleep(for: .seconds(1))
        #expect(agent.stdout.split(separator: "\n").count > before, "polling goes on with the old sources")
        #expect(agent.stderr.contains("reload failed") && agent.stderr.contains("sources[0].interval"))

        agent.process.terminate()
        agent.process.waitUntilExit()
        #expect(agent.process.terminationStatus == 0)
    }

    @Test("a bad configuration stops start-up with one line naming file, line and key")
    func badConfiguration() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("virtmeter.yaml")
        try "libvirt_uri: test:///default\nbatch_size: lots\n".write(to: config, atomically: true, encoding: .utf8)
        let agent = try runningAgent(["--config", config.path], directory: directory)
        agent.process.waitUntilExit()
        #expect(agent.process.terminationStatus != 0)
        #expect(agent.stderr == "virtmeter: \(config.path):2: batch_size: expected an integer, got 'lots'\n")
    }

    @Test("no configuration file at all: built-in defaults poll every meter")
    func defaults() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let agent = try runningAgent(["--connect", testNodeURI], directory: directory)
        try await Task.sleep(for: .seconds(1.5))
        agent.process.terminate()
        agent.process.waitUntilExit()
        #expect(agent.process.terminationStatus == 0)
        #expect(agent.meters().isSuperset(of: ["cpu", "memory.usage", "disk.device.read.bytes"]))
    }
}

import Foundation
import Testing
import VirtMeterCore
import VirtMeterTestSupport

@Suite("declared meters: poll and meters against the test driver")
struct DeclaredMeterPollTests {
    /// A meters directory with one file declaring meters over the `state.*` fields libvirt 9's test driver returns.
    func metersDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-decl-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try ("meters:\n  - name: domain.state.declared\n    type: gauge\n    unit: state\n"
             + "    summary: libvirt's state number\n    field: state.state\n"
             + "  - name: domain.reason.scaled\n    type: gauge\n    unit: x\n    summary: a scaled reason\n"
             + "    field: state.reason\n    scale: 1/4\n")
            .write(to: directory.appendingPathComponent("state.yaml"), atomically: true, encoding: .utf8)
        return directory
    }

    @Test("poll --meters-dir: declared meters read from the bulk call, one sample per domain, signed")
    func poll() throws {
        let directory = try metersDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try virtmeter(["poll", "--connect", testNodeURI, "--meters-dir", directory.path,
                                               "--meters", "domain.*,vcpus"])
        #expect(result.status == 0, "\(result.stderr)")
        let samples = try result.stdout.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        let states = samples.filter { $0["counter_name"]?.stringValue == "domain.state.declared" }
        // Every domain of the node, running (1) or paused (3).
        #expect(states.count == nodeDomains.count)
        let byName = Dictionary(uniqueKeysWithValues: states.map {
            ($0["resource_metadata"]?["name"]?.stringValue ?? "", $0["counter_volume"])
        })
        #expect(byName.values.allSatisfy { $0 == .int(1) || $0 == .int(3) }, "\(byName)")
        #expect(states.allSatisfy {
            $0["resource_id"]?.stringValue == $0["resource_metadata"]?["instance_id"]?.stringValue
        })
        let scaled = samples.filter { $0["counter_name"]?.stringValue == "domain.reason.scaled" }
        #expect(scaled.count == nodeDomains.count)
        #expect(scaled.allSatisfy { if case .double = $0["counter_volume"] { true } else { false } })
    }

    @Test("meters --meters-dir lists declared meters with their file and line; a broken file is one line")
    func meters() throws {
        let directory = try metersDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try virtmeter(["meters", "--meters-dir", directory.path])
        #expect(result.status == 0, "\(result.stderr)")
        // The meters, then a blank line and the legend of the origin column.
        let lines = result.stdout.split(separator: "\n").dropLast()
        #expect(lines.count == MeterRegistry.builtIn.meters.count + 2)
        #expect(result.stdout.hasSuffix("declared: from a file of meters_dir\n"))
        let declared = try #require(lines.first { $0.hasPrefix("domain.state.declared ") })
        #expect(declared.contains("gauge") && declared.contains("state") && declared.contains(" declared ")
                && declared.hasSuffix("[declared in \(directory.path)/state.yaml:2]"))
        #expect(lines.last?.hasSuffix("[declared in \(directory.path)/state.yaml:7]") == true)

        try "meters:\n  - name: cpu\n    type: gauge\n    unit: x\n    summary: s\n    field: cpu.time\n"
            .write(to: directory.appendingPathComponent("zz.yaml"), atomically: true, encoding: .utf8)
        let broken = try virtmeter(["meters", "--meters-dir", directory.path])
        #expect(broken.status != 0)
        #expect(broken.stderr == "virtmeter: \(directory.path)/zz.yaml:2: meters[0].name: 'cpu' is a built-in "
                + "meter: choose another name\n")
    }
}

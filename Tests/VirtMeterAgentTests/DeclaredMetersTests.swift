import Foundation
import Testing
import VirtMeterCore
import VirtMeterTestSupport
@testable import VirtMeterAgent

/// The shipped examples with the leading '#' of each line after `meters:` removed.
func uncommentedExamples() throws -> String {
    let file = repositoryRoot.appendingPathComponent("etc/virtmeter/meters.d/examples.yaml")
    let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
    let start = try #require(lines.firstIndex(of: "meters:"))
    return (lines[...start] + lines[(start + 1)...].map { $0.dropFirst() }).joined(separator: "\n")
}

@Suite("declared meters: YAML in meters_dir")
struct DeclaredMetersTests {
    @Test("the issue's three examples parse into their declarations")
    func examples() throws {
        let meters = try DeclaredMeters.parse(try uncommentedExamples(), file: "examples.yaml").meters
        let byName = Dictionary(uniqueKeysWithValues: meters.map { ($0.name, $0.declaration) })
        let faults = try #require(byName["memory.major_faults"])
        #expect(faults.type == .cumulative && faults.field.text == "balloon.major_fault" && faults.scale == 1)
        #expect(faults.source == "examples.yaml:23")
        let steal = try #require(byName["cpu.steal"])
        #expect(steal.type == .gauge && steal.unit == "%" && steal.aggregate == .mean && steal.rate)
        #expect(steal.scale == 1e-7 && steal.field.isIndexed)
        let flush = try #require(byName["disk.device.flushes"])
        #expect(flush.isPerDevice && flush.field.group == "block")
        #expect(byName["memory.disk_caches"]?.scale == 1.0 / 1024)
        #expect(meters.count == 8)
    }

    @Test("the shipped examples.yaml, all commented out, loads and declares nothing")
    func shippedFile() throws {
        let directory = repositoryRoot.appendingPathComponent("etc/virtmeter/meters.d").path
        #expect(try DeclaredMeters.load(directory: directory).meters.isEmpty)
    }

    @Test("a directory of files: read in name order, registered after the built-in meters, names unique across files")
    func directory() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try "meters:\n  - {name: b.one, type: gauge, unit: x, summary: s, field: state.reason}\n"
            .write(to: directory.appendingPathComponent("b.yaml"), atomically: true, encoding: .utf8)
        try "meters:\n  - {name: a.one, type: gauge, unit: x, summary: s, field: state.state}\n"
            .write(to: directory.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try "not yaml: [".write(to: directory.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        let declared = try DeclaredMeters.load(directory: directory.path)
        #expect(declared.meters.map(\.name) == ["a.one", "b.one"])
        let registry = declared.registry()
        #expect(registry.names.suffix(2) == ["a.one", "b.one"])
        #expect(registry.names.count == MeterRegistry.builtIn.names.count + 2)
        try "meters:\n  - {name: a.one, type: gauge, unit: x, summary: s, field: state.state}\n"
            .write(to: directory.appendingPathComponent("c.yaml"), atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try DeclaredMeters.load(directory: directory.path) }
        do {
            _ = try DeclaredMeters.load(directory: directory.path)
        } catch {
            #expect(error.description == "\(directory.path)/c.yaml:2: meters[0].name: 'a.one' is already declared "
                    + "at \(directory.path)/a.yaml:2")
        }
        #expect(throws: ConfigError(file: "/nonexistent-meters", key: "meters_dir",
                                    message: "cannot read the directory")) {
            try DeclaredMeters.load(directory: "/nonexistent-meters")
        }
    }

    static let good = "    type: gauge\n    unit: x\n    summary: s\n"

    /// Each error case, and the one line it gives.
    static let errors: [(String, String)] = [
        ("meters:\n  - name: m\n" + good + "    field: state.state\n    colour: red\n",
         "m.yaml:7: meters[0].colour: unknown key (known keys: name, type, unit, summary, field, aggregate, scale, "
            + "rate)"),
        ("meter:\n  - name: m\n", "m.yaml:2: meter: unknown key (known keys: meters)"),
        ("meters:\n  - name: m\n    type: counter\n    unit: x\n    summary: s\n    field: state.state\n",
         "m.yaml:3: meters[0].type: unknown type 'counter' (known: gauge, cumulative, delta)"),
        ("meters:\n  - name: memory.usage\n" + good + "    field: balloon.usable\n",
         "m.yaml:2: meters[0].name: 'memory.usage' is a built-in meter: choose another name"),
        ("meters:\n  - name: m\n" + good + "    field: balloon.major_faults\n",
         "m.yaml:6: meters[0].field: 'balloon.major_faults' matches no field libvirt returns for any domain "
            + "(balloon fields: balloon.current, balloon.maximum, balloon.swap_in, balloon.swap_out, "
            + "balloon.major_fault, balloon.minor_fault, balloon.unused, balloon.available, balloon.rss, "
            + "balloon.usable, balloon.last-update, balloon.disk_caches, balloon.hugetlb_pgalloc, "
            + "balloon.hugetlb_pgfail)"),
        ("meters:\n  - name: m\n" + good + "    field: gpu.N.busy\n",
         "m.yaml:6: meters[0].field: 'gpu.N.busy' matches no field libvirt returns for any domain (groups: balloon, "
            + "block, cpu, dirtyrate, iothread, memory, net, perf, state, vcpu, vm)"),
        ("meters:\n  - name: m\n" + good + "    field: block.N.name\n",
         "m.yaml:6: meters[0].field: 'block.N.name' is a name, not a number"),
        ("meters:\n  - name: m\n" + good + "    field: vcpu.N.N\n",
         "m.yaml:6: meters[0].field: 'vcpu.N.N' is not a stats field (names separated by dots, at most one N)"),
        ("meters:\n  - name: m\n" + good + "    field: vcpu.N.delay\n",
         "m.yaml:6: meters[0].field: 'vcpu.N.delay' gives one value per vcpu index and only disks (block.N) and "
            + "interfaces (net.N) have resource ids: add aggregate: sum or mean"),
        ("meters:\n  - name: m\n" + good + "    field: vcpu.N.delay\n    aggregate: max\n",
         "m.yaml:7: meters[0].aggregate: unknown aggregate 'max' (known: sum, mean)"),
        ("meters:\n  - name: m\n" + good + "    field: balloon.rss\n    aggregate: sum\n",
         "m.yaml:7: meters[0].aggregate: aggregates over N, and field 'balloon.rss' has no N"),
        ("meters:\n  - name: m\n" + good + "    field: balloon.rss\n    scale: 1/0\n",
         "m.yaml:7: meters[0].scale: expected a number or a fraction such as 1/1024, got '1/0'"),
        ("meters:\n  - name: m\n" + good + "    field: balloon.rss\n    scale: lots\n",
         "m.yaml:7: meters[0].scale: expected a number or a fraction such as 1/1024, got 'lots'"),
        ("meters:\n  - name: m\n" + good + "    field: balloon.rss\n    scale: 0\n",
         "m.yaml:7: meters[0].scale: must not be 0"),
        ("meters:\n  - name: m\n    type: cumulative\n    unit: x\n    summary: s\n    field: cpu.user\n"
            + "    rate: true\n",
         "m.yaml:7: meters[0].rate: a rate (per second since the previous poll) is a gauge: set type: gauge"),
        ("meters:\n  - name: m\n" + good + "    field: cpu.user\n    rate: yes please\n",
         "m.yaml:7: meters[0].rate: expected true or false"),
        ("meters:\n  - name: bad name\n" + good + "    field: cpu.user\n",
         "m.yaml:2: meters[0].name: 'bad name' may hold only letters, digits, '.', '-', '_' and ':'"),
        ("meters:\n  - name: m\n    type: gauge\n    summary: s\n    field: cpu.user\n",
         "m.yaml:2: meters[0].unit: required value is missing"),
        ("meters:\n  - type: gauge\n    unit: x\n    summary: s\n    field: cpu.user\n",
         "m.yaml:2: meters[0].name: required value is missing"),
        ("meters:\n  - name: m\n    type: gauge\n    unit: x\n    field: cpu.user\n",
         "m.yaml:2: meters[0].summary: required value is missing"),
        ("meters:\n  - name: m\n    type: gauge\n    unit: x\n    summary: s\n",
         "m.yaml:2: meters[0].field: required value is missing"),
        ("meters:\n  - name: m\n" + good + "    field: cpu.user\n  - name: m\n" + good + "    field: cpu.system\n",
         "m.yaml:7: meters[1].name: 'm' is already declared at m.yaml:2"),
        ("meters: cpu.user\n", "m.yaml:1: meters: expected a list"),
        ("meters:\n  - name: m\n    type: gauge\n    unit: x\n    summary: \"two\\nlines\"\n    field: cpu.user\n",
         "m.yaml:5: meters[0].summary: must be one line"),
        ("meters:\n  - name: [m\n", "m.yaml:3: not valid YAML: did not find expected ',' or ']'"),
    ]

    @Test("every mistake is one line naming the file, the line and the key", arguments: errors)
    func error(_ yaml: String, _ line: String) {
        do {
            let meters = try DeclaredMeters.parse(yaml, file: "m.yaml").meters
            Issue.record("accepted: \(meters.map(\.name))")
        } catch {
            #expect(error.description == line)
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("a literal index is accepted as the field of that index only; hypervisor-specific vcpu fields too")
    func literalIndex() throws {
        let yaml = "meters:\n  - name: m\n" + Self.good + "    field: vcpu.0.delay\n  - name: n\n" + Self.good
            + "    field: vcpu.N.halt_wakeup.sum\n    aggregate: sum\n"
        let meters = try DeclaredMeters.parse(yaml, file: "m.yaml").meters
        #expect(meters.map(\.declaration.field.isIndexed) == [false, true])
    }

    @Test("polling.yaml selects declared meters by name; the built-in default polls them too")
    func polling() throws {
        let registry = try DeclaredMeters.parse(try uncommentedExamples(), file: "examples.yaml").registry()
        let polling = try PollingConfiguration.parse(
            "sources:\n  - name: s\n    interval: 60\n    meters: [cpu.steal, 'disk.device.*']\n", file: "p.yaml",
            registry: registry)
        #expect(polling.sources[0].meters.map(\.name).contains("cpu.steal"))
        #expect(polling.sources[0].meters.map(\.name).contains("disk.device.flushes"))
        #expect(polling.warnings.isEmpty)
        let everything = PollingConfiguration.builtInDefault(registry: registry)
        #expect(everything.sources[0].meters.count == registry.meters.count)
        let request = StatsFieldRequest(meters: polling.sources[0].meters)
        #expect(Set(request.patterns.map(\.text)) == ["vcpu.N.delay", "block.N.fl.reqs", "block.N.errors"])
    }

    @Test("virtmeter.yaml's meters_dir")
    func configuration() throws {
        let config = try AgentConfiguration.parse("meters_dir: /etc/virtmeter/meters.d\n", file: "v.yaml")
        #expect(config.metersDirectory == "/etc/virtmeter/meters.d")
        #expect(AgentConfiguration().metersDirectory == nil)
    }
}

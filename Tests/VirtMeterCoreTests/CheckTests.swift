import Testing
@testable import VirtMeterCore

@Suite("virtmeter check: threshold ranges (Monitoring Plugins guidelines)")
struct ThresholdRangeTests {
    /// (range, value, alerts?) as the guidelines' table gives them, boundaries included.
    static let cases: [(String, Double, Bool)] = [
        ("10", -0.01, true), ("10", 0, false), ("10", 5, false), ("10", 10, false), ("10", 10.01, true),
        ("10:", 9.99, true), ("10:", 10, false), ("10:", 1e12, false),
        ("~:10", -1e12, false), ("~:10", 10, false), ("~:10", 10.01, true),
        ("10:20", 9.99, true), ("10:20", 10, false), ("10:20", 20, false), ("10:20", 20.01, true),
        ("@10:20", 9.99, false), ("@10:20", 10, true), ("@10:20", 15, true), ("@10:20", 20, true),
        ("@10:20", 20.01, false),
        ("@10", -1, false), ("@10", 0, true), ("@10", 10, true), ("@10", 11, false),
        ("@~:10", -1e12, true), ("@~:10", 10.5, false), ("@10:", 9, false), ("@10:", 1e12, true),
        ("-5:5", -5.01, true), ("-5:5", -5, false), ("0.5:1.5", 0.4, true), ("0.5:1.5", 1.5, false),
        ("0", 0, false), ("0", 0.01, true),
    ]

    @Test("every form alerts exactly where the guidelines say", arguments: cases)
    func alerts(_ range: String, _ value: Double, _ expected: Bool) throws {
        let parsed = try ThresholdRange(parsing: range)
        #expect(parsed.alerts(value) == expected, "\(range) with \(value)")
        #expect(parsed.description == range)
    }

    @Test("the parts are read as the guidelines define them")
    func parts() throws {
        let plain = try ThresholdRange(parsing: "10")
        #expect(plain.start == 0 && plain.end == 10 && !plain.alertsInside)
        let open = try ThresholdRange(parsing: "10:")
        #expect(open.start == 10 && open.end == .infinity)
        let below = try ThresholdRange(parsing: "~:10")
        #expect(below.start == -.infinity && below.end == 10)
        let inverted = try ThresholdRange(parsing: "@10:20")
        #expect(inverted.start == 10 && inverted.end == 20 && inverted.alertsInside)
    }

    @Test("anything else is a bad argument naming the option and the text",
          arguments: ["", "abc", "20:10", ":10", "10:abc", "@", "1e3", "~", "10:~", "1.2.3", "10::20", " 10", "."])
    func invalid(_ text: String) {
        #expect(throws: CheckArgumentError.self) { try ThresholdRange(parsing: text, option: "--warning") }
        do {
            _ = try ThresholdRange(parsing: text, option: "--warning")
        } catch {
            #expect(error.description.hasPrefix("--warning: '\(text)' is not a threshold range"))
        }
    }

    @Test("critical wins over warning; no thresholds is OK")
    func states() throws {
        let thresholds = try CheckThresholds(warning: "80", critical: "90")
        #expect(thresholds.state(for: 50) == .ok)
        #expect(thresholds.state(for: 85) == .warning)
        #expect(thresholds.state(for: 95) == .critical)
        #expect(CheckThresholds().state(for: 1e9) == .ok)
        let inverted = try CheckThresholds(warning: "@0:10", critical: "@0:5")
        #expect(inverted.state(for: 3) == .critical && inverted.state(for: 7) == .warning
                && inverted.state(for: 11) == .ok)
    }

    @Test("the worst state: CRITICAL > WARNING > UNKNOWN > OK; exit codes 0 1 2 3")
    func worst() {
        #expect(CheckState.worst([.ok, .unknown, .warning]) == .warning)
        #expect(CheckState.worst([.ok, .unknown]) == .unknown)
        #expect(CheckState.worst([.critical, .unknown, .warning]) == .critical)
        #expect(CheckState.worst([CheckState]()) == .ok)
        #expect(CheckState.allCases.map(\.rawValue) == [0, 1, 2, 3])
    }
}

@Suite("virtmeter check: values and the output line")
struct CheckReportTests {
    func domain(_ name: String = "vm-1", vcpus: Int = 2, cpu: UInt64 = 0, at time: Double = 0,
                balloon: BalloonStats = BalloonStats(), readBytes: UInt64 = 0) -> DomainSnapshot {
        var disk = DiskStats(name: "vda")
        disk.readBytes = readBytes
        return DomainSnapshot(uuid: "u-" + name, name: name, vcpuCount: vcpus, cpuTime: cpu, maxMemoryKiB: 131_072,
                              memoryKiB: 131_072, balloon: balloon, disks: [disk], monotonicTime: time)
    }

    @Test("meters: unknown names, delta meters and a misplaced --percent are bad arguments")
    func measures() throws {
        #expect(throws: CheckArgumentError.self) { try CheckMeasure(meterName: "cpu_utl", percent: false) }
        #expect(throws: CheckArgumentError("--meter: network.incoming.bytes.delta is a delta meter; check the rate "
                                           + "of network.incoming.bytes instead")) {
            try CheckMeasure(meterName: "network.incoming.bytes.delta", percent: false)
        }
        #expect(throws: CheckArgumentError("--percent applies to --meter memory.usage only")) {
            try CheckMeasure(meterName: "cpu_util", percent: true)
        }
        #expect(try CheckMeasure(meterName: "cpu_util", percent: false).needsTwoReadings)
        #expect(try !CheckMeasure(meterName: "memory.usage", percent: false).needsTwoReadings)
        let rate = try CheckMeasure(meterName: "disk.device.read.bytes", percent: false)
        #expect(rate.needsTwoReadings && rate.unit == "B/s" && rate.name == "disk.device.read.bytes rate")
    }

    @Test("cpu_util is per vCPU: one of 2 vCPUs busy reads 50")
    func cpuUtil() throws {
        let measure = try CheckMeasure(meterName: "cpu_util", percent: false)
        let values = try measure.values(domain(cpu: 5_000_000_000, at: 15), previous: domain(cpu: 0, at: 10)).get()
        #expect(values.count == 1 && values[0].device == nil && values[0].value == 50)
        let backwards = measure.values(domain(cpu: 1, at: 15), previous: domain(cpu: 9_000_000_000, at: 10))
        #expect(throws: CheckArgumentError.self) { try backwards.get() }
    }

    @Test("a cumulative meter's rate per second, per device; a counter going backwards has no rate")
    func rates() throws {
        let measure = try CheckMeasure(meterName: "disk.device.read.bytes", percent: false)
        let values = try measure.values(domain(at: 4, readBytes: 3_000), previous: domain(at: 2, readBytes: 1_000))
            .get()
        #expect(values.count == 1 && values[0].device == "vda" && values[0].value == 1_000)
        #expect(throws: CheckArgumentError.self) {
            try measure.values(domain(at: 4, readBytes: 1), previous: domain(at: 2, readBytes: 1_000)).get()
        }
    }

    @Test("memory.usage in MiB or as a percentage; without balloon stats the reason says how to enable them")
    func memory() throws {
        let balloon = BalloonStats(available: 102_400, usable: 25_600)   // 100 MiB seen, 75 MiB used
        let usage = try CheckMeasure(meterName: "memory.usage", percent: false)
        #expect(try usage.values(domain(balloon: balloon), previous: nil).get().map(\.value) == [75])
        let percent = try CheckMeasure(meterName: "memory.usage", percent: true)
        #expect(try percent.values(domain(balloon: balloon), previous: nil).get().map(\.value) == [75])
        let report = CheckReport(measure: usage, thresholds: CheckThresholds(), results: CheckReport.results(
            domain: "vm-1", measure: usage, thresholds: CheckThresholds(), now: domain(), previous: nil))
        #expect(report.state == .unknown)
        #expect(report.line.hasPrefix("VIRTMETER UNKNOWN - vm-1 memory.usage: the guest reports no balloon statistics"))
        #expect(report.line.contains("<memballoon model='virtio'><stats period='10'/></memballoon>"))
        #expect(report.line.hasSuffix(" | 'vm-1:memory.usage'=U"))
    }

    @Test("one domain: the value in the text, perfdata 'label'=value[UOM];warn;crit;min;max")
    func single() throws {
        let measure = try CheckMeasure(meterName: "cpu_util", percent: false)
        let thresholds = try CheckThresholds(warning: "80", critical: "@90:100")
        let report = CheckReport(measure: measure, thresholds: thresholds,
                                 results: [CheckResult(domain: "vm-1", value: 49.876, thresholds: thresholds)])
        #expect(report.state == .ok)
        #expect(report.line == "VIRTMETER OK - vm-1 cpu_util 49.88% | 'vm-1:cpu_util'=49.88%;80;@90:100;0;100")
        let memory = try CheckMeasure(meterName: "memory.usage", percent: false)
        let critical = try CheckThresholds(warning: nil, critical: "~:64")
        let line = CheckReport(measure: memory, thresholds: critical,
                               results: [CheckResult(domain: "it's", value: 75.5, thresholds: critical)]).line
        #expect(line == "VIRTMETER CRITICAL - it's memory.usage 75.5 MiB | 'it''s:memory.usage'=75.5MB;;~:64;0")
    }

    @Test("several domains: the worst state, the text names those not OK, worst first")
    func several() throws {
        let measure = try CheckMeasure(meterName: "cpu_util", percent: false)
        let thresholds = try CheckThresholds(warning: "40", critical: "60")
        let results = [
            CheckResult(domain: "a", value: 10, thresholds: thresholds),
            CheckResult(domain: "b", value: 50, thresholds: thresholds),
            CheckResult(domain: "c", unknown: "no such domain"),
            CheckResult(domain: "d", value: 100, thresholds: thresholds),
        ]
        let report = CheckReport(measure: measure, thresholds: thresholds, results: results)
        #expect(report.state == .critical)
        #expect(report.line == "VIRTMETER CRITICAL - 3 of 4 not OK: d cpu_util 100% (CRITICAL), b cpu_util 50% "
                + "(WARNING), c cpu_util: no such domain (UNKNOWN) | 'a:cpu_util'=10%;40;60;0;100 "
                + "'b:cpu_util'=50%;40;60;0;100 'c:cpu_util'=U 'd:cpu_util'=100%;40;60;0;100")
        let fine = CheckReport(measure: measure, thresholds: thresholds, results: Array(results.prefix(1))
                               + [CheckResult(domain: "e", value: 33.333, thresholds: thresholds)])
        #expect(fine.state == .ok)
        #expect(fine.line.hasPrefix("VIRTMETER OK - cpu_util OK on 2 domains, highest e cpu_util 33.33% | "))
    }

    @Test("the text stays one line without a stray perfdata separator; numbers have no exponent")
    func oneLine() {
        #expect(CheckReport.line(.unknown, "a\nb|c") == "VIRTMETER UNKNOWN - a b/c")
        #expect(CheckReport.number(1e12) == "1000000000000")
        #expect(CheckReport.number(0.004) == "0")
        #expect(CheckReport.number(-2.5) == "-2.5")
    }
}

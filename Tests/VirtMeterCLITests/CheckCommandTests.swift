import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterCore

/// `virtmeter check ARGS` against the test-driver node: exit status, the one stdout line, and the run time. Waits
/// for the process without blocking a thread of the cooperative pool (the scheduling tests running beside these
/// need it).
func check(_ arguments: [String], uri: String? = testNodeURI) async throws
    -> (status: Int32, line: String, seconds: Double) {
    let started = Date()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: virtmeterBinary)
    process.arguments = ["check"] + (uri.map { ["--connect", $0] } ?? []) + arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        process.terminationHandler = { _ in continuation.resume() }
        do { try process.run() } catch { continuation.resume(throwing: error) }
    }
    // The line is far below a pipe's capacity: the process could write it all before exiting.
    let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let lines = stdout.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(lines.count == 2 && lines[1].isEmpty, "exactly one line on stdout: \(stdout)")
    return (process.terminationStatus, String(lines.first ?? ""), Date().timeIntervalSince(started))
}

/// The perfdata of a check line: label → (value, the fields after it).
func perfdata(_ line: String) -> [String: (value: Double?, fields: [String])] {
    guard let bar = line.range(of: " | ") else { return [:] }
    var entries: [String: (Double?, [String])] = [:]
    for item in line[bar.upperBound...].split(separator: " ") {
        guard let equals = item.lastIndex(of: "=") else { continue }
        let label = item[..<equals].trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        let fields = item[item.index(after: equals)...].split(separator: ";", omittingEmptySubsequences: false)
            .map(String.init)
        let number = fields[0].prefix { $0.isNumber || $0 == "." || $0 == "-" }
        entries[label] = (Double(number), Array(fields.dropFirst()))
    }
    return entries
}

/// The test node's domains: name → vCPUs (its cpuTime is the wall clock, so cpu_util is 100 / vCPUs).
let nodeDomains = ["instance-0000002a": 2, "instance-0000002b": 4, "instance-0000002c": 1, "plain-vm": 3]

@Suite("virtmeter check against the test-driver node", .serialized)
struct CheckCommandTests {
    @Test("the test node's cpuTime runs with the wall clock: cpu_util reads 100 / vCPUs for every domain")
    func cpuUtilIsPerVCPU() async throws {
        let result = try await check(["--all", "--interval", "1"])
        #expect(result.status == 0, "\(result.line)")
        #expect(result.line.hasPrefix("VIRTMETER OK - cpu_util OK on 4 domains, highest instance-0000002c cpu_util "))
        let data = perfdata(result.line)
        #expect(Set(data.keys) == Set(nodeDomains.keys.map { $0 + ":cpu_util" }))
        for (name, vcpus) in nodeDomains {
            let entry = try #require(data[name + ":cpu_util"])
            let value = try #require(entry.value)
            #expect(abs(value - 100 / Double(vcpus)) < 1, "\(name): \(value)% with \(vcpus) vCPUs")
            #expect(entry.fields == ["", "", "0", "100"])
        }
        #expect(result.seconds >= 1, "the two readings are --interval apart")
    }

    @Test("every state from the thresholds: 2 vCPUs read 50%")
    func states() async throws {
        let cases: [([String], Int32, String)] = [
            (["-w", "60", "-c", "80"], 0, "OK"),
            (["-w", "40", "-c", "80"], 1, "WARNING"),
            (["-w", "20", "-c", "40"], 2, "CRITICAL"),
        ]
        for (thresholds, status, word) in cases {
            let result = try await check(["--domain", "instance-0000002a", "--interval", "0.5"] + thresholds)
            #expect(result.status == status, "\(thresholds): \(result.line)")
            #expect(result.line.hasPrefix("VIRTMETER \(word) - instance-0000002a cpu_util "), "\(result.line)")
            let entry = try #require(perfdata(result.line)["instance-0000002a:cpu_util"])
            #expect(abs((entry.value ?? 0) - 50) < 1)
            #expect(entry.fields == [thresholds[1], thresholds[3], "0", "100"])
        }
    }

    @Test("every range form, as -c against 50%", arguments: [
        ("10", 2), ("60", 0), ("60:", 2), ("40:", 0), ("~:40", 2), ("~:60", 0), ("40:60", 0), ("55:70", 2),
        ("@40:60", 2), ("@0:10", 0), ("@45", 0), ("@55", 2),
    ] as [(String, Int32)])
    func rangeForms(_ range: String, _ status: Int32) async throws {
        let result = try await check(["--domain", "instance-0000002a", "--interval", "0.3", "-c", range])
        #expect(result.status == status, "-c \(range): \(result.line)")
        #expect(result.line.contains(";;\(range);0;100"), "\(result.line)")
    }

    @Test("the compatibility form: vcpu DOMAIN WARN CRIT [INTERVAL]")
    func compatibility() async throws {
        // 4 vCPUs: 25%, not 100% as the seed plugin would report.
        let result = try await check(["vcpu", "instance-0000002b", "20", "30", "0.5"])
        #expect(result.status == 1, "\(result.line)")
        #expect(result.line.hasPrefix("VIRTMETER WARNING - instance-0000002b cpu_util 2"), "\(result.line)")
        #expect(result.line.hasSuffix(";20;30;0;100"))
        let ok = try await check(["vcpu", "instance-0000002c", "100", "101"])
        #expect(ok.status == 0 && ok.line.hasPrefix("VIRTMETER OK - instance-0000002c cpu_util "), "\(ok.line)")
    }

    @Test("memory.usage in MiB and in percent; a domain by UUID; the rate of a cumulative meter")
    func otherMeters() async throws {
        let usage = try await check(["--domain", "a6b2c4d8-1234-4e5f-9abc-def012345678", "--meter", "memory.usage",
                               "-w", "2000", "-c", "3000"])
        #expect(usage.status == 0)
        #expect(usage.line == "VIRTMETER OK - instance-0000002a memory.usage 1024 MiB | "
                + "'instance-0000002a:memory.usage'=1024MB;2000;3000;0")
        let percent = try await check(["--domain", "instance-0000002a", "--meter", "memory.usage", "--percent", "-w", "40",
                                 "-c", "90"])
        #expect(percent.status == 1)
        #expect(percent.line == "VIRTMETER WARNING - instance-0000002a memory.usage 50% | "
                + "'instance-0000002a:memory.usage'=50%;40;90;0;100")
        // cpu is cumulative (ns): its rate is 10⁹ ns per second of wall clock here.
        let rate = try await check(["--domain", "plain-vm", "--meter", "cpu", "--interval", "0.5", "-c", "2000000000"])
        #expect(rate.status == 0, "\(rate.line)")
        let value = try #require(perfdata(rate.line)["plain-vm:cpu_rate"]?.value)
        #expect(abs(value / 1e9 - 1) < 0.01, "\(rate.line)")
    }

    @Test("several domains: the worst state, the text names those not OK")
    func worst() async throws {
        let result = try await check(["--domain", "instance-0000002a", "--domain", "instance-0000002c", "--domain",
                                "nonesuch", "--interval", "0.3", "-w", "60", "-c", "90"])
        #expect(result.status == 2, "\(result.line)")
        #expect(result.line.hasPrefix("VIRTMETER CRITICAL - 2 of 3 not OK: instance-0000002c cpu_util ")
                && result.line.contains("% (CRITICAL), nonesuch cpu_util: no such domain on \(testNodeURI) "
                                        + "(UNKNOWN) | "),
                "\(result.line)")
        #expect(perfdata(result.line)["nonesuch:cpu_util"].map { $0.value == nil } == true)
        let balloon = try await check(["--all", "--meter", "memory.usage"])
        #expect(balloon.status == 3, "\(balloon.line)")
        #expect(balloon.line.hasPrefix("VIRTMETER UNKNOWN - 2 of 4 not OK: instance-0000002c memory.usage: "),
                "--all goes by name: \(balloon.line)")
        #expect(balloon.line.hasSuffix(" | 'instance-0000002a:memory.usage'=1024MB;;;0 "
                                       + "'instance-0000002b:memory.usage'=3072MB;;;0 'instance-0000002c:memory.usage'=U "
                                       + "'plain-vm:memory.usage'=U"))
        #expect(balloon.line.contains("plain-vm memory.usage: the guest reports no balloon statistics"))
    }

    @Test("every failure is UNKNOWN with the reason on the one line", arguments: [
        (["--domain", "nonesuch"], "VIRTMETER UNKNOWN - nonesuch cpu_util: no such domain on test://"),
        (["--domain", "instance-0000002c", "--meter", "memory.usage"],
         "VIRTMETER UNKNOWN - instance-0000002c memory.usage: the guest reports no balloon statistics: give the "
         + "domain <memballoon model='virtio'><stats period='10'/></memballoon> and load virtio_balloon in the guest"),
        (["--domain", "plain-vm", "-w", "10:5"], "VIRTMETER UNKNOWN - --warning: '10:5' is not a threshold range"),
        (["--domain", "plain-vm", "-c", "abc"], "VIRTMETER UNKNOWN - --critical: 'abc' is not a threshold range"),
        (["--domain", "plain-vm", "--meter", "cpu_utl"], "VIRTMETER UNKNOWN - --meter: unknown meter 'cpu_utl'"),
        (["--domain", "plain-vm", "--meter", "network.incoming.bytes.delta"],
         "VIRTMETER UNKNOWN - --meter: network.incoming.bytes.delta is a delta meter"),
        (["-w", "1"], "VIRTMETER UNKNOWN - no domain: give --domain NAME or UUID (repeatable), or --all"),
        (["--all", "--domain", "plain-vm"], "VIRTMETER UNKNOWN - give --all or --domain, not both"),
        (["--domain", "plain-vm", "--interval", "0"], "VIRTMETER UNKNOWN - --interval must be a positive number"),
        (["--domain", "plain-vm", "--interval", "x"], "VIRTMETER UNKNOWN - bad arguments: "),
        (["--domain", "plain-vm", "--bogus"], "VIRTMETER UNKNOWN - bad arguments: Unknown option '--bogus'"),
        (["vcpu", "plain-vm", "80"], "VIRTMETER UNKNOWN - unexpected arguments 'vcpu plain-vm 80'; the "
         + "compatibility form is: vcpu DOMAIN WARN CRIT [INTERVAL]"),
        (["vcpu", "plain-vm", "80", "90", "soon"], "VIRTMETER UNKNOWN - INTERVAL 'soon' is not a number of seconds"),
    ] as [([String], String)])
    func failures(_ arguments: [String], _ expected: String) async throws {
        let result = try await check(arguments)
        #expect(result.status == 3, "\(arguments): \(result.line)")
        #expect(result.line.hasPrefix(expected), "\(arguments): \(result.line)")
    }

    @Test("libvirt unreachable is UNKNOWN: a bad URI, no libvirtd behind the socket", arguments: [
        ("bogus:///nowhere", "VIRTMETER UNKNOWN - cannot connect to libvirt: libvirt: virConnectOpenReadOnly("
         + "bogus:///nowhere) failed: "),
        ("qemu+unix:///system?socket=/nonexistent/libvirt-sock",
         "VIRTMETER UNKNOWN - cannot connect to libvirt: libvirt: virConnectOpenReadOnly(qemu+unix:///system?socket="
         + "/nonexistent/libvirt-sock) failed: Failed to connect socket to '/nonexistent/libvirt-sock': No such file"),
    ])
    func unreachable(_ uri: String, _ expected: String) async throws {
        let result = try await check(["--domain", "x"], uri: uri)
        #expect(result.status == 3)
        #expect(result.line.hasPrefix(expected), "\(result.line)")
    }

    @Test("-t 1 against --interval 5: UNKNOWN after about 1 s, not 5")
    func timeout() async throws {
        let result = try await check(["--domain", "plain-vm", "-t", "1", "--interval", "5"])
        #expect(result.status == 3)
        #expect(result.line == "VIRTMETER UNKNOWN - timed out after 1 s (--timeout; --interval is 5 s)")
        #expect(result.seconds >= 1 && result.seconds < 2.5, "took \(result.seconds) s")
    }
}

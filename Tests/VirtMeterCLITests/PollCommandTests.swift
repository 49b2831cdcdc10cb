import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterCore


@Suite("virtmeter poll against the test driver")
struct PollCommandTests {
    @Test("prints valid JSON lines with the expected meters, signed with the secret file")
    func pollPrintsJSON() throws {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-secret-\(getpid())")
        try "a test secret\n".write(to: secret, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: secret) }
        let result = try virtmeter(["poll", "--connect", testNodeURI, "--count", "2", "--interval", "0.5",
                                               "--secret-file", secret.path, "--host", "compute-7"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        let samples = try lines.map { try JSONValue.parse(String($0)) }
        let names = Set(samples.compactMap { $0["counter_name"]?.stringValue })
        #expect(names.isSuperset(of: ["cpu", "cpu_util", "vcpus", "memory", "memory.usage", "memory.resident",
                                     "memory.available", "memory.swap.in", "memory.swap.out", "power.state",
                                     "disk.device.read.bytes", "network.incoming.bytes"]))
        let signer = SampleSigner(secret: "a test secret")
        #expect(samples.allSatisfy { signer.verify($0) })
        // cpu_util only from the second cycle, one per domain; the test driver's CPU time runs at 1 s per second,
        // so a domain with N vCPUs shows about 100/N %.
        let utils = samples.filter { $0["counter_name"] == .string("cpu_util") }
        #expect(utils.count == 4)
        for util in utils {
            let vcpus = try #require(util["resource_metadata"]?["vcpus"]?.doubleValue)
            let value = try #require(util["counter_volume"]?.doubleValue)
            #expect(abs(value - 100 / vcpus) < 5, "cpu_util \(value) with \(vcpus) vCPUs")
        }
        let web = samples.first { $0["resource_id"] == .string("a6b2c4d8-1234-4e5f-9abc-def012345678") }
        #expect(web?["user_id"] == .string("9d0a3f5c2c6b4b8b9f0e1f2a3b4c5d6e"))
        #expect(web?["resource_metadata"]?["display_name"] == .string("web-01"))
        #expect(web?["resource_metadata"]?["instance_host"] == .string("compute-7"))
    }

    @Test("--meters filters with wildcards and exclusions")
    func meterFilter() throws {
        let result = try virtmeter(["poll", "--connect", testNodeURI, "--meters", "memory.*"])
        #expect(result.status == 0)
        let names = Set(try result.stdout.split(separator: "\n").compactMap {
            try JSONValue.parse(String($0))["counter_name"]?.stringValue
        })
        #expect(names == ["memory.usage", "memory.resident", "memory.available", "memory.swap.in", "memory.swap.out"])
    }

    @Test("an unknown meter is one line naming the valid ones, and a non-zero exit")
    func unknownMeter() throws {
        let result = try virtmeter(["poll", "--connect", testNodeURI, "--meters", "cpu,memory.usgae"])
        #expect(result.status != 0 && result.stdout.isEmpty)
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(result.stderr.contains("unknown meter memory.usgae") && result.stderr.contains("memory.usage"))
    }

    @Test("--interval that is not finite, or absurd, is refused as polling.yaml's interval is")
    func badInterval() async throws {
        try await offThePool { try Self.checkBadIntervals() }
    }

    static func checkBadIntervals() throws {
        for interval in ["inf", "1e300", "nan", "0", "-1", "0.0001"] {
            let result = try runProgram(virtmeterBinary,
                                 ["poll", "--connect", testNodeURI, "--count", "2", "--interval=\(interval)"])
            #expect(result.status != 0 && result.stdout.isEmpty, "--interval \(interval)")
            #expect(result.stderr.contains("--interval must be between"), "--interval \(interval): \(result.stderr)")
        }
        let fine = try virtmeter(["poll", "--connect", testNodeURI, "--count", "2", "--interval", "0.2"])
        #expect(fine.status == 0, "\(fine.stderr)")
    }

    @Test("an unreachable libvirt is one line and a non-zero exit")
    func unreachable() throws {
        let result = try virtmeter(["poll", "--connect", "qemu+unix:///system?socket=/nonexistent/sock"])
        #expect(result.status != 0 && result.stdout.isEmpty)
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.hasPrefix("virtmeter: libvirt:"))
    }

    @Test("virtmeter meters lists every meter with type, unit and origin")
    func meters() throws {
        let result = try virtmeter(["meters"])
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == MeterRegistry.builtIn.meters.count + 1)   // and the legend line
        #expect(lines.contains { $0.hasPrefix("cpu.delay ") && $0.contains(" virtmeter ") })
        #expect(lines.contains { $0.hasPrefix("cpu_util ") && $0.contains(" virtmeter ") })
        #expect(lines.contains { $0.hasPrefix("disk.device.flush.requests ") && $0.contains(" virtmeter ") })
        #expect(lines.contains { $0.hasPrefix("perf.cpu.cycles ") && $0.contains(" ceilometer ") })
        #expect(lines.contains { $0.hasPrefix("memory.usage ") && $0.contains("gauge") && $0.contains("MiB") })
        #expect(lines.contains { $0.hasPrefix("cpu ") && $0.contains("cumulative") && $0.contains(" ns ") })
    }
}

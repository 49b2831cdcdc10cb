import Logging
import Testing
import VirtMeterTestSupport
@testable import VirtMeterCore

/// Runs the given meters over scripted polls through the real Poller and returns each cycle's sample dicts exactly
/// as written (the bytes parsed back, in their key order).
func runDicts(_ meters: [any Meter], _ polls: [[DomainSnapshot]], logger: Logger = Logger(label: "test"),
              secret: String = "", perRecord: Int = 50) async throws -> [[JSONValue]] {
    var poller = Poller(hypervisor: FakeHypervisor(polls), meters: meters,
                        stamper: SampleStamper(host: "compute-1", signer: SampleSigner(secret: secret)),
                        samplesPerRecord: perRecord, logger: logger)
    var cycles: [[JSONValue]] = []
    for _ in polls {
        var dicts: [JSONValue] = []
        _ = try await poller.cycle { records in dicts += try records.decodedDicts() }
        cycles.append(dicts)
    }
    return cycles
}

/// Runs the given meters over scripted polls through the real Poller and returns each cycle's samples, read back.
func run(_ meters: [any Meter], _ polls: [[DomainSnapshot]], logger: Logger = Logger(label: "test"),
         secret: String = "") async throws -> [[Sample]] {
    try await runDicts(meters, polls, logger: logger, secret: secret).map { dicts in
        try dicts.map { try #require(Sample(json: $0)) }
    }
}

@Suite("cpu and cpu_util")
struct CPUMeterTests {
    @Test("cpu_util = Δcpu / (Δt · 10⁹ · vCPUs) · 100, nothing on the first poll")
    func arithmetic() async throws {
        let cycles = try await run([CPUUtilMeter()], [
            [snapshot(vcpus: 2, cpu: 10_000_000_000, at: 100)],
            [snapshot(vcpus: 2, cpu: 13_000_000_000, at: 105)],   // 3 s of CPU over 5 s on 2 vCPUs: 30 %
            [snapshot(vcpus: 2, cpu: 13_500_000_000, at: 107)],   // 0.5 s over 2 s on 2 vCPUs: 12.5 %
        ])
        #expect(cycles[0].isEmpty)
        #expect(cycles[1].map(\.volume) == [.double(30)])
        #expect(cycles[2].map(\.volume) == [.double(12.5)])
        let sample = try #require(cycles[1].first)
        #expect(sample.name == "cpu_util" && sample.type == .gauge && sample.unit == "%")
    }

    @Test("cpu_util is clamped to [0, 100]")
    func clamped() async throws {
        let cycles = try await run([CPUUtilMeter()], [
            [snapshot(vcpus: 1, cpu: 0, at: 0)],
            [snapshot(vcpus: 1, cpu: 3_000_000_000, at: 1)],   // 300 % of one vCPU
        ])
        #expect(cycles[1].map(\.volume) == [.double(100)])
    }

    @Test("a cpu counter that goes backwards gives no sample and becomes the new baseline")
    func reset() async throws {
        let cycles = try await run([CPUUtilMeter()], [
            [snapshot(vcpus: 1, cpu: 50_000_000_000, at: 0)],
            [snapshot(vcpus: 1, cpu: 1_000_000_000, at: 10)],    // rebooted
            [snapshot(vcpus: 1, cpu: 1_500_000_000, at: 11)],    // 0.5 s of 1 s from the new baseline
        ])
        #expect(cycles[1].isEmpty)
        #expect(cycles[2].map(\.volume) == [.double(50)])
    }

    @Test("a domain that vanished and came back starts again from its first poll")
    func vanished() async throws {
        let other = snapshot(uuid: "other", vcpus: 1, cpu: 0, at: 0)
        let cycles = try await run([CPUUtilMeter()], [
            [snapshot(vcpus: 1, cpu: 0, at: 0), other],
            [other],
            [snapshot(vcpus: 1, cpu: 1_000_000_000, at: 2)],
        ])
        #expect(cycles[2].isEmpty)
    }

    @Test("cpu sums vCPU time + wait, falls back to cpu.time, carries cpu_number")
    func cumulative() async throws {
        var withVCPUs = snapshot(vcpus: 2, cpu: 999)
        withVCPUs.vcpuTimes = [VCPUTime(time: 100, wait: 5), VCPUTime(time: 200, wait: 7)]
        var missingWait = withVCPUs
        missingWait.vcpuTimes[1].wait = nil
        let cycles = try await run([CPUMeter()], [[withVCPUs], [missingWait]])
        #expect(cycles[0].map(\.volume) == [.int(312)])
        #expect(cycles[1].map(\.volume) == [.int(999)])
        let sample = try #require(cycles[0].first)
        #expect(sample.type == .cumulative && sample.unit == "ns")
        #expect(sample.resourceMetadata["cpu_number"] == .int(2))
    }
}

@Suite("memory meters")
struct MemoryMeterTests {
    @Test("memory.usage = available − usable when the guest reports usable")
    func usable() async throws {
        let balloon = BalloonStats(available: 2_000_000, unused: 1_500_000, usable: 1_000_000)
        let cycles = try await run([MemoryUsageMeter()], [[snapshot(balloon: balloon)]])
        #expect(cycles[0].map(\.volume) == [.double(1_000_000.0 / 1024)])
        #expect(cycles[0].first?.unit == "MiB")
    }

    @Test("memory.usage = available − unused without usable")
    func unusedOnly() async throws {
        let balloon = BalloonStats(available: 1_048_576, unused: 524_288)
        let cycles = try await run([MemoryUsageMeter()], [[snapshot(balloon: balloon)]])
        #expect(cycles[0].map(\.volume) == [.double(512)])
    }

    @Test("no balloon stats: no memory.usage sample and one warning per domain, not per cycle")
    func noBalloonStats() async throws {
        let (logger, logs) = capturingLogger()
        let a = snapshot(uuid: "a", balloon: BalloonStats(actual: 1024, rss: 2048))
        let b = snapshot(uuid: "b")
        let cycles = try await run([MemoryUsageMeter(), MemoryResidentMeter()], [[a, b], [a, b], [a, b]],
                                   logger: logger)
        #expect(cycles.allSatisfy { !$0.contains { $0.name == "memory.usage" } })
        #expect(cycles[0].filter { $0.name == "memory.resident" }.map(\.volume) == [.double(2)])
        let warnings = logs.all.filter { $0.0 == .warning }
        #expect(warnings.count == 2)
        #expect(Set(warnings.compactMap { $0.2["virtmeter.domain.uuid"]?.description }) == ["a", "b"])
        #expect(warnings.allSatisfy {
            ($0.2["virtmeter.meter.reason"]?.description ?? "").contains("<stats period='10'/>")
        })
    }

    @Test("memory.resident, memory.available, swap in MiB; memory from the balloon, vcpus from the domain")
    func units() async throws {
        let balloon = BalloonStats(actual: 2048, available: 3072, rss: 5120, swapIn: 1024, swapOut: 2048)
        let cycles = try await run(InstanceMeters.all, [[snapshot(vcpus: 3, cpu: nil, balloon: balloon)]])
        let byName = Dictionary(cycles[0].map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byName["memory.resident"]?.volume == .double(5))
        #expect(byName["memory.available"]?.volume == .double(3))
        #expect(byName["memory.swap.in"]?.volume == .double(1))
        #expect(byName["memory.swap.out"]?.volume == .double(2))
        #expect(byName["memory"]?.volume == .double(2))
        #expect(byName["vcpus"]?.volume == .int(3))
        #expect(byName["power.state"]?.volume == .int(1))
        #expect(byName["cpu"] == nil)   // no cpu time at all: no sample rather than a made-up one
        let expected: [String: (SampleType, String)] = [
            "memory.resident": (.gauge, "MiB"), "memory.available": (.gauge, "MiB"), "memory": (.gauge, "MiB"),
            "memory.swap.in": (.cumulative, "MiB"), "memory.swap.out": (.cumulative, "MiB"),
            "vcpus": (.gauge, "vcpu"), "power.state": (.gauge, ""),
        ]
        for (name, (type, unit)) in expected {
            #expect(byName[name]?.type == type && byName[name]?.unit == unit, "\(name)")
        }
    }
}

@Suite("device meters")
struct DeviceMeterTests {
    @Test("disk and network resource ids and metadata follow ceilometer")
    func resourceIDs() async throws {
        var domain = snapshot()
        var disk = DiskStats(name: "vda")
        disk.readBytes = 42
        domain.disks = [disk]
        var nic = InterfaceStats(name: "tap0", mac: "fa:16:3e:00:00:01")
        nic.rxBytes = 100
        domain.interfaces = [nic]
        var later = domain
        later.interfaces[0].rxBytes = 150
        let registry = MeterRegistry.builtIn
        let meters = ["disk.device.read.bytes", "network.incoming.bytes", "network.incoming.bytes.delta"]
            .compactMap(registry.meter(named:))
        let cycles = try await run(meters, [[domain], [later]])
        let disks = cycles[0].filter { $0.name == "disk.device.read.bytes" }
        #expect(disks.map(\.resourceID) == ["\(domain.uuid)-vda"])
        #expect(disks.first?.resourceMetadata["disk_name"] == .string("vda"))
        let network = try #require(cycles[0].first { $0.name == "network.incoming.bytes" })
        #expect(network.resourceID == "instance-1-\(domain.uuid)-tap0")
        #expect(network.resourceMetadata["mac"] == .string("fa:16:3e:00:00:01"))
        #expect(network.resourceMetadata["vnic_name"] == .string("tap0"))
        #expect(cycles[0].first { $0.name == "network.incoming.bytes.delta" }?.volume == .int(0))   // as ceilometer
        #expect(cycles[1].first { $0.name == "network.incoming.bytes.delta" }?.volume == .int(50))
    }
}

@Suite("meter selection")
struct MeterSelectorTests {
    @Test("wildcards, exclusions and ceilometer's mixing rules")
    func rules() throws {
        let memory = try MeterSelector(commaSeparated: "cpu_util,memory.*")
        #expect(memory.admits("memory.usage") && memory.admits("cpu_util"))
        #expect(!memory.admits("memory") && !memory.admits("cpu"))
        let exclude = try MeterSelector(["!disk.*", "!cpu"])
        #expect(exclude.admits("memory") && !exclude.admits("disk.device.read.bytes") && !exclude.admits("cpu"))
        let wildcardWithExclusion = try MeterSelector(["*", "!memory.swap.*"])
        #expect(wildcardWithExclusion.admits("cpu") && !wildcardWithExclusion.admits("memory.swap.in"))
        #expect(throws: MeterSelectorError.self) { try MeterSelector(["cpu", "!memory"]) }
        #expect(throws: MeterSelectorError.self) { try MeterSelector(["*", "cpu"]) }
        #expect(throws: MeterSelectorError.self) { try MeterSelector([]) }
        #expect(memory.unmatched(among: MeterRegistry.builtIn.names).isEmpty)
        #expect(try MeterSelector(["cpu", "nosuch.meter"]).unmatched(among: MeterRegistry.builtIn.names)
                == ["nosuch.meter"])
    }
}

@Suite("libvirt values that are missing, zero or out of range")
struct BadValueTests {
    @Test("no crash, no made-up sample, and other domains keep theirs")
    func oddSnapshots() async throws {
        var zero = snapshot(uuid: "zero", vcpus: 0, cpu: 0, at: 0)
        zero.maxMemoryKiB = 0
        var huge = snapshot(uuid: "huge", vcpus: 1, cpu: UInt64.max, at: 0,
                            balloon: BalloonStats(available: UInt64.max, unused: 0, usable: UInt64.max, rss: UInt64.max,
                                                  swapIn: UInt64.max))
        var disk = DiskStats(name: "vda")
        disk.readBytes = UInt64.max
        huge.disks = [disk]
        let inverted = snapshot(uuid: "inverted", balloon: BalloonStats(available: 100, unused: 500))
        let normal = snapshot(uuid: "normal", vcpus: 1, cpu: 0, at: 0, balloon: BalloonStats(available: 2048, unused: 1024))
        var laterZero = zero
        laterZero.cpuTime = 5_000_000_000
        laterZero.monotonicTime = 1
        var laterHuge = huge
        laterHuge.monotonicTime = 1   // same cpu: 0 %
        var laterNormal = normal
        laterNormal.cpuTime = 500_000_000
        laterNormal.monotonicTime = 1
        let cycles = try await run(MeterRegistry.builtIn.meters,
                                   [[zero, huge, inverted, normal], [laterZero, laterHuge, inverted, laterNormal]])
        let second = cycles[1]
        func values(_ uuid: String, _ meter: String) -> [Volume] {
            second.filter { $0.resourceID.hasPrefix(uuid) && $0.name == meter }.map(\.volume)
        }
        #expect(values("zero", "cpu_util").isEmpty)                 // zero vCPUs: no rate
        #expect(values("zero", "memory").isEmpty)                   // no balloon size: none, as ceilometer
        #expect(values("huge", "cpu") == [.int(Int64.max)])          // clamped into the wire's integer range
        #expect(values("huge", "cpu_util") == [.double(0)])
        #expect(values("huge", "memory.usage") == [.double(0)])
        #expect(values("huge", "disk.device.read.bytes") == [.int(Int64.max)])
        #expect(values("inverted", "memory.usage").isEmpty)          // available < unused: nonsense, no sample
        #expect(values("normal", "cpu_util") == [.double(50)])
        #expect(values("normal", "memory.usage") == [.double(1)])
        #expect(second.allSatisfy { $0.volume.doubleValue.isFinite })
    }
}

@Suite("records between cycles")
struct RecordBufferTests {
    struct DeliveryFailed: Error {}

    @Test("a recycled buffer is written over in place and gives the bytes a new writer gives")
    func recycledBuffer() {
        func fill(_ writer: inout RecordWriter, _ text: String) {
            for index in 0..<7 { writer.append { $0 += Array("\(text) \(index)".utf8); return true } }
        }
        var fresh = RecordWriter(samplesPerRecord: 3, capacity: 4096)
        fill(&fresh, "second")
        let expected = fresh.takeAll()

        var writer = RecordWriter(samplesPerRecord: 3, capacity: 4096)
        fill(&writer, "first")
        let first = writer.takeSealed()
        #expect(first.spans.count == 2)
        let storage = first.bytes.withUnsafeBufferPointer { $0.baseAddress }
        writer.recycle(consume first)
        _ = writer.takeAll()   // the open record left from "first"
        fill(&writer, "second")
        let sealed = writer.takeSealed()
        #expect(sealed.bytes.withUnsafeBufferPointer { $0.baseAddress } == storage, "the recycled buffer is reused")
        var rest = writer.takeAll()
        rest.spans = rest.spans.map {
            SampleRecords.Span(start: $0.start + sealed.bytes.count, payloadLength: $0.payloadLength,
                               samples: $0.samples)
        }
        #expect(sealed.bytes + rest.bytes == expected.bytes)
        #expect(sealed.spans + rest.spans == expected.spans)
    }

    @Test("samples a failed delivery left in the writer do not reach the next cycle")
    func failedDeliveryLeavesNothing() async throws {
        let domains = (0..<40).map { index in
            snapshot(uuid: "a6b2c4d8-1234-4e5f-9abc-" + String(repeating: "0", count: 12 - String(index).count)
                + String(index))
        }
        var poller = Poller(hypervisor: FakeHypervisor([domains, domains]), meters: [VCPUsMeter()],
                            stamper: SampleStamper(host: "compute-1", signer: SampleSigner(secret: "")),
                            samplesPerRecord: 3, chunkBytes: 2048, logger: Logger(label: "test"))
        var handed = 0
        await #expect(throws: DeliveryFailed.self) {
            _ = try await poller.cycle { records in
                handed += records.sampleCount
                throw DeliveryFailed()
            }
        }
        #expect(handed > 0 && handed < domains.count, "the first chunk failed mid-cycle")
        var delivered: [JSONValue] = []
        let result = try await poller.cycle { delivered += try $0.decodedDicts() }
        #expect(result.samples == domains.count && delivered.count == domains.count)
        #expect(Set(delivered.compactMap { $0["resource_id"]?.stringValue }).count == domains.count)
    }
}

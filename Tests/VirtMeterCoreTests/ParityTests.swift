import Testing
@testable import VirtMeterCore

/// The values ceilometer's compute agent sends (read from ceilometer's libvirt inspector, pollsters and libvirt
/// discovery), checked meter by meter; the differential test (scripts/test-parity) checks them against ceilometer's
/// own code.
@Suite("parity with ceilometer's compute agent")
struct ParityTests {
    static let nova: NovaMetadata = {
        var nova = NovaMetadata(
            displayName: "web-01",
            flavor: Flavor(id: nil, name: "m1.small", vcpus: 2, ramMiB: 2048, diskGiB: 20, ephemeralGiB: 5),
            userID: "u1", userName: "alice", projectID: "p1", projectName: "web", imageID: "img-1")
        nova.flavor.extraSpecs = [NamedText("hw:cpu_policy", "dedicated"), NamedText("empty", nil)]
        nova.imageMeta = [NamedText("base_image_ref", "img-1"), NamedText("disk_format", "qcow2"),
                          NamedText("min_ram", "0"), NamedText("hw_rng_model", "virtio")]
        return nova
    }()

    func byName(_ samples: [Sample]) -> [String: Sample] {
        Dictionary(samples.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    @Test("power.state is the raw virDomainState; metadata state and status use ceilometer's words")
    func powerState() async throws {
        let expected: [(DomainState, Int64, String, String)] = [
            (.running, 1, "running", "active"), (.blocked, 2, "running", "active"), (.paused, 3, "paused", "paused"),
            (.shutdown, 4, "shutdown", "stopped"), (.shutoff, 5, "shutdown", "stopped"), (.crashed, 6, "crashed", "error"),
            (.pmSuspended, 7, "suspended", "suspended"), (.noState, 0, "pending", "building"),
        ]
        for (state, number, word, status) in expected {
            var domain = snapshot()
            domain.state = state
            let sample = try #require(try await run([PowerStateMeter()], [[domain]])[0].first)
            #expect(sample.volume == .int(number) && sample.unit == "")
            #expect(sample.resourceMetadata["state"] == .string(word))
            #expect(sample.resourceMetadata["status"] == .string(status))
        }
    }

    @Test("memory is the balloon's actual size in MiB, a float; swap needs both figures")
    func memory() async throws {
        let domain = snapshot(balloon: BalloonStats(actual: 1_572_864, swapIn: 2048))
        let samples = byName(try await run(InstanceMeters.all, [[domain]])[0])
        #expect(samples["memory"]?.volume == .double(1536))
        #expect(samples["memory.swap.in"] == nil && samples["memory.swap.out"] == nil)
    }

    @Test("disk.device.capacity is max(capacity, physical)")
    func capacity() async throws {
        var domain = snapshot()
        var cdrom = DiskStats(name: "hdc")
        cdrom.capacity = 4096
        cdrom.physical = 6144
        var disk = DiskStats(name: "vda")
        disk.capacity = 10_737_418_240
        disk.physical = 1_000_000
        domain.disks = [cdrom, disk]
        let meter = try #require(MeterRegistry.builtIn.meter(named: "disk.device.capacity"))
        let samples = try await run([meter], [[domain]])[0]
        #expect(samples.map(\.volume) == [.int(6144), .int(10_737_418_240)])
    }

    @Test("disk.root.size and disk.ephemeral.size from the flavor, also for a shut-off domain read for metadata")
    func flavorSizes() async throws {
        var stopped = snapshot(uuid: "stopped", nova: Self.nova)
        stopped.state = .shutoff
        stopped.metadataOnly = true
        let plain = snapshot(uuid: "plain")
        let samples = try await run(MeterRegistry.builtIn.meters, [[stopped, plain]])[0]
        let stoppedSamples = samples.filter { $0.resourceID == "stopped" }
        #expect(Set(stoppedSamples.map(\.name)) == ["disk.root.size", "disk.ephemeral.size"])
        #expect(byName(stoppedSamples)["disk.root.size"]?.volume == .int(15))
        #expect(byName(stoppedSamples)["disk.ephemeral.size"]?.volume == .int(5))
        #expect(byName(stoppedSamples)["disk.root.size"]?.unit == "GiB")
        #expect(!samples.contains { $0.resourceID == "plain" && $0.name.hasPrefix("disk.root") })
    }

    @Test("resource_metadata: flavor extra_specs, image_meta, the flavor's name as id when nova wrote none")
    func metadata() async throws {
        let sample = try #require(try await run([VCPUsMeter()], [[snapshot(nova: Self.nova)]])[0].first)
        let flavor = try #require(sample.resourceMetadata["flavor"])
        #expect(flavor["id"] == .string("m1.small"))
        #expect(flavor["swap"] == .int(0))   // nova wrote no swap: ceilometer's _safe_find_int gives 0
        #expect(flavor["extra_specs"] == .object([("hw:cpu_policy", .string("dedicated")), ("empty", .null)]))
        #expect(sample.resourceMetadata["image_meta"] == .object([
            ("base_image_ref", .string("img-1")), ("disk_format", .string("qcow2")), ("min_ram", .string("0")),
            ("hw_rng_model", .string("virtio")),
        ]))
        #expect(sample.resourceMetadata["root_gb"] == .int(15))
        var plain = Self.nova
        plain.flavor.extraSpecs = nil
        plain.imageMeta = nil
        let older = try #require(try await run([VCPUsMeter()], [[snapshot(nova: plain)]])[0].first)
        #expect(older.resourceMetadata["flavor"]?["extra_specs"] == nil && older.resourceMetadata["image_meta"] == nil)
    }

    @Test("user_name and project_name from nova's names, on the wire and in the signature")
    func names() async throws {
        let signed = try await runDicts([VCPUsMeter()], [[snapshot(nova: Self.nova)]], secret: "s3cret")[0]
        let sample = try #require(signed.first)
        #expect(sample["user_name"] == .string("alice") && sample["project_name"] == .string("web"))
        #expect(SampleSigner(secret: "s3cret").verify(sample))
        var anonymous = Self.nova
        anonymous.userName = nil
        anonymous.projectName = nil
        let unnamed = try #require(try await runDicts([VCPUsMeter()], [[snapshot(nova: anonymous)]])[0].first)
        #expect(unnamed["user_name"] == .null && unnamed["project_name"] == .null)
    }

    @Test("vNIC metadata: filterref name as resource and vnic_name, parameters with interfaceid and bridge")
    func vnic() async throws {
        var domain = snapshot()
        var nic = InterfaceStats(name: "tap1", mac: "fa:16:3e:00:00:02")
        nic.filterRef = "nova-instance-1-fa163e000002"
        nic.filterParameters = [NamedText("ip", "192.0.2.5")]
        nic.interfaceID = "port-1"
        nic.bridge = "br-int"
        nic.rxBytes = 10
        domain.interfaces = [nic]
        let meter = try #require(MeterRegistry.builtIn.meter(named: "network.incoming.bytes"))
        let sample = try #require(try await run([meter], [[domain]])[0].first)
        #expect(sample.resourceID == "nova-instance-1-fa163e000002")
        #expect(sample.resourceMetadata["vnic_name"] == .string("nova-instance-1-fa163e000002"))
        #expect(sample.resourceMetadata["fref"] == .string("nova-instance-1-fa163e000002"))
        #expect(sample.resourceMetadata["parameters"] == .object([
            ("ip", .string("192.0.2.5")), ("interfaceid", .string("port-1")), ("bridge", .string("br-int")),
        ]))
    }

    @Test("a delta after a counter reset is the whole counter, as ceilometer")
    func deltaReset() async throws {
        var domain = snapshot()
        var nic = InterfaceStats(name: "tap0", mac: "fa:16:3e:00:00:01")
        nic.txBytes = 500
        domain.interfaces = [nic]
        var reset = domain
        reset.interfaces[0].txBytes = 70
        let meter = try #require(MeterRegistry.builtIn.meter(named: "network.outgoing.bytes.delta"))
        let cycles = try await run([meter], [[domain], [reset]])
        #expect(cycles.map { $0.map(\.volume) } == [[.int(0)], [.int(70)]])
    }

    @Test("cpu.delay sums vcpu.N.delay; cpu.delay_util is its share of the interval per vCPU")
    func cpuDelay() async throws {
        var first = snapshot(vcpus: 2, at: 10)
        first.vcpuTimes = [VCPUTime(time: 1, wait: 0, delay: 1_000_000_000), VCPUTime(time: 1, wait: 0, delay: 0)]
        var second = first
        second.monotonicTime = 12
        second.vcpuTimes[1].delay = 1_000_000_000   // 1 s of 4 vCPU-seconds: 25 %
        let cycles = try await run([CPUDelayMeter(), CPUDelayUtilMeter()], [[first], [second]])
        #expect(cycles[0].map(\.volume) == [.int(1_000_000_000)])
        #expect(cycles[1].map(\.volume) == [.int(2_000_000_000), .double(25)])
        #expect(!CPUDelayMeter().isCeilometerMeter && !CPUDelayUtilMeter().isCeilometerMeter)
        var missing = first
        missing.vcpuTimes[0].delay = nil
        #expect(try await run([CPUDelayMeter()], [[missing]])[0].isEmpty)
    }

    @Test("perf.* from the perf group; the reason says why when the domain enables perf but gets none")
    func perf() async throws {
        var domain = snapshot()
        domain.perfEnabled = true
        domain.perf = PerfStats(cpuCycles: 1000, instructions: 2000)
        let samples = byName(try await run(PerfMeter.all, [[domain]])[0])
        #expect(samples["perf.cpu.cycles"]?.volume == .int(1000) && samples["perf.instructions"]?.volume == .int(2000))
        #expect(samples["perf.cpu.cycles"]?.type == .gauge && samples["perf.cpu.cycles"]?.unit == "")
        #expect(samples["perf.cache.misses"] == nil)
        let misses = try #require(PerfMeter.all.last)
        #expect(misses.unavailableReason(domain)?.contains("perf.cache_misses") == true)
        #expect(misses.unavailableReason(snapshot()) == nil)   // perf not enabled: nothing to say
    }
}

import Foundation
import Testing
import VirtMeterTestSupport
@testable import VirtMeterCore

@Suite("samples on the wire")
struct SampleTests {
    static let nova = NovaMetadata(displayName: "web-01", flavor: Flavor(id: "2", name: "m1.small", vcpus: 2, ramMiB: 2048,
                                                                        diskGiB: 20, ephemeralGiB: 0, swapMiB: 0),
                                   userID: "u1", projectID: "5b1c7d3e4f5a4b6c8d9e0f1a2b3c4d5e", imageID: "img-1")

    @Test("every key of ceilometer's sample dict, in its order, with nova's metadata")
    func keys() async throws {
        var domain = snapshot(nova: Self.nova)
        domain.architecture = "x86_64"
        domain.osType = "hvm"
        let cycles = try await runDicts([CPUMeter()], [[domain]], secret: "change this for valid signing")
        let json = try #require(cycles[0].first)
        guard case .object(let pairs) = json else { Issue.record("not an object"); return }
        #expect(pairs.map(\.0) == [
            "source", "counter_name", "counter_type", "counter_unit", "counter_volume", "user_id", "user_name",
            "project_id", "project_name", "resource_id", "timestamp", "resource_metadata", "message_id",
            "monotonic_time", "message_signature",
        ])
        #expect(json["user_id"] == .string("u1") && json["user_name"] == .null && json["project_name"] == .null)
        let metadata = try #require(json["resource_metadata"])
        #expect(metadata["display_name"] == .string("web-01"))
        #expect(metadata["instance_type"] == .string("m1.small"))
        #expect(metadata["instance_host"] == .string("compute-1"))
        #expect(metadata["host"] == .string(SHA224.hexDigest("5b1c7d3e4f5a4b6c8d9e0f1a2b3c4d5ecompute-1")))
        #expect(metadata["flavor"]?["ram"] == .int(2048))
        #expect(metadata["image"]?["id"] == .string("img-1") && metadata["image_ref"] == .string("img-1"))
        #expect(metadata["root_gb"] == .int(20) && metadata["architecture"] == .string("x86_64"))
        for key in ["display_name", "name", "instance_id", "instance_type", "host", "instance_host", "flavor", "status",
                    "state", "image", "image_ref", "architecture", "os_type", "vcpus", "memory_mb", "disk_gb",
                    "ephemeral_gb", "root_gb", "cpu_number"] {
            #expect(metadata[key] != nil, "\(key)")
        }
        #expect(SampleSigner(secret: "change this for valid signing").verify(json))
    }

    @Test("timestamp format, v1 message ids, monotonic time")
    func stamps() async throws {
        var read = snapshot(balloon: BalloonStats(available: 10, unused: 5))
        read.monotonicTime = 12345.678901
        let cycles = try await run(InstanceMeters.all, [[read]])
        let samples = cycles[0]
        #expect(samples.count >= 5)
        let timestamp = try Regex(#"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$"#)
        let v1 = try Regex(#"^[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"#)
        for sample in samples {
            #expect(sample.timestamp.wholeMatch(of: timestamp) != nil, "\(sample.timestamp)")
            #expect(sample.messageID.wholeMatch(of: v1) != nil, "\(sample.messageID)")
            // The time the domain was read, as ceilometer's is the time the instance was inspected.
            #expect(sample.monotonicTime == 12345.678901)
            #expect(sample.signature == "")   // no secret: no signature, as ceilometer does
        }
        #expect(Set(samples.map(\.messageID)).count == samples.count)
    }

    /// A meter giving one reading of `volume`, under any name, type and unit.
    struct OneReading: Meter {
        let name: String, type: SampleType, unit: String, volume: Int64
        var summary: String { "test" }
        func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void) {
            body(Reading(.int(volume)))
        }
    }

    @Test("one meter name with two units in a list: each sample keeps its own unit, cycle after cycle")
    func sameNameTwoUnits() async throws {
        // The first sample waits (unsigned) for the second, of a meter with the same name rendered apart: each is
        // written from its own rendering, which the encoder keeps while a sample may point at it.
        let meters: [any Meter] = [
            OneReading(name: "x", type: .gauge, unit: "B", volume: 1),
            OneReading(name: "x", type: .cumulative, unit: "MiB", volume: 2),
            OneReading(name: "y", type: .gauge, unit: "%", volume: 3),
        ]
        let cycles = try await run(meters, [[snapshot()], [snapshot()]], secret: "s")
        for samples in cycles {
            #expect(samples.map(\.unit) == ["B", "MiB", "%"])
            #expect(samples.map(\.type) == [.gauge, .cumulative, .gauge])
            #expect(samples.map(\.volume) == [.int(1), .int(2), .int(3)])
        }
        let dicts = try await runDicts(meters, [[snapshot()]], secret: "s")[0]
        #expect(dicts.allSatisfy { SampleSigner(secret: "s").verify($0) })
    }

    /// A meter with a reading only for the domains whose vCPU count is in `vcpus`.
    struct SomeDomains: Meter {
        let name: String, type: SampleType, unit: String, vcpus: Set<Int>
        var summary: String { "test" }
        func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void) {
            if vcpus.contains(now.vcpuCount) { body(Reading(.int(Int64(now.vcpuCount)))) }
        }
    }

    @Test("a meter without readings for a cycle's first domains has its own unit and type in the later ones' samples")
    func meterLateInCycle() async throws {
        // The encoder remembers that the first domains found no rendering of "late": the rendering made for the third
        // one must be found from then on, and "early"'s must not be taken for it.
        let meters: [any Meter] = [
            SomeDomains(name: "early", type: .gauge, unit: "B", vcpus: [1, 2, 3, 4, 5]),
            SomeDomains(name: "late", type: .cumulative, unit: "ns", vcpus: [3, 5]),
        ]
        let domains = (1...5).map { snapshot(uuid: "a6b2c4d8-1234-4e5f-9abc-00000000000\($0)", vcpus: $0) }
        let cycles = try await run(meters, [domains, domains], secret: "s")
        for samples in cycles {
            #expect(samples.map(\.name) == ["early", "early", "early", "late", "early", "early", "late"])
            #expect(samples.map(\.volume) == [1, 2, 3, 3, 4, 5, 5].map { .int($0) })
            #expect(samples.filter { $0.name == "late" }.allSatisfy { $0.unit == "ns" && $0.type == .cumulative })
            #expect(samples.filter { $0.name == "early" }.allSatisfy { $0.unit == "B" && $0.type == .gauge })
        }
    }

    @Test("a domain's XML read again (its devices new objects, the same ids): the same samples, nothing kept twice")
    func devicesMadeAgain() throws {
        let stamper = SampleStamper(host: "h", signer: SampleSigner(secret: "s"))
        var encoder = SampleEncoder(signer: stamper.signer)
        /// The domain with one disk, its resource made anew as a read of its XML makes it.
        func read() -> DomainSnapshot {
            var now = snapshot()
            var disk = DiskStats(name: "vda")
            disk.readBytes = 7
            disk.resource = .disk("vda", domainUUID: now.uuid)
            now.disks = [disk]
            return now
        }
        let meters = DiskMeters.all
        var keptMetadata: ObjectIdentifier?
        var prepared = stamper.prepare(read())
        var cycles: [[Sample]] = []
        var resources: [DeviceResource] = []
        for _ in 0..<3 {
            let now = read()
            var writer = RecordWriter(samplesPerRecord: 100)
            stamper.write(now, previous: nil, meters: meters, prepared: &prepared, encoder: &encoder, to: &writer)
            cycles.append(try writer.takeAll().decodedSamples())
            resources.append(try #require(now.disks[0].resource))
            // One entry per device, holding the latest object (found by it next), its metadata merged once.
            let latest = try #require(resources.last)
            #expect(prepared.devices.count == 1 && prepared.devices[0].device === latest)
            let metadata = ObjectIdentifier(try #require(prepared.devices.first).metadata)
            #expect(keptMetadata == nil || keptMetadata == metadata)
            keptMetadata = metadata
            #expect(prepared.merged.isEmpty)
        }
        #expect(resources[0] !== resources[1])
        for samples in cycles {
            #expect(samples.map(\.resourceID) == ["\(snapshot().uuid)-vda"])
            #expect(samples.map { $0.resourceMetadata["disk_name"] } == [.string("vda")])
        }
    }

    @Test("the UTC timestamp is computed correctly")
    func utc() {
        // 2024-05-01T12:00:00.123456Z
        #expect(SampleClock.utcTimestamp(nanoseconds: 1_714_564_800_123_456_789) == "2024-05-01T12:00:00.123456")
        #expect(SampleClock.utcTimestamp(nanoseconds: 1_714_564_800_123_456_789, separator: " ") == "2024-05-01 12:00:00.123456")
        #expect(SampleClock.utcTimestamp(nanoseconds: 0) == "1970-01-01T00:00:00.000000")
        #expect(SampleClock.utcTimestamp(nanoseconds: 1_000) == "1970-01-01T00:00:00.000001")
        #expect(SampleClock.utcTimestamp(nanoseconds: 4_102_444_799_999_999_000) == "2099-12-31T23:59:59.999999")
    }

    @Test("a v1 UUID encodes the wall clock")
    func uuidTime() throws {
        let id = UUIDv1Generator().next(wallNanoseconds: 1_714_564_800_000_000_000)
        let parts = id.split(separator: "-")
        let ticks = UInt64(parts[2].dropFirst(), radix: 16)! << 48 | UInt64(parts[1], radix: 16)! << 32
            | UInt64(parts[0], radix: 16)!
        #expect((ticks - 0x01B2_1DD2_1381_4000) * 100 == 1_714_564_800_000_000_000)
        // Lowercase hex in 8-4-4-4-12, version 1, variant 10, a multicast node (as Python's uuid1 without a MAC).
        let hex = Set("0123456789abcdef")
        #expect(parts.map(\.count) == [8, 4, 4, 4, 12] && parts.allSatisfy { $0.allSatisfy(hex.contains) }, "\(id)")
        #expect(parts[2].first == "1" && "89ab".contains(parts[3].first!), "\(id)")
        #expect(UInt8(parts[4].prefix(2), radix: 16)! & 1 == 1, "\(id)")
    }

    @Test("JSON text round-trips through the parser, numbers keep their kind")
    func roundTrip() throws {
        let value = JSONValue.object([
            ("a", .int(123456789000)), ("b", .double(387.890625)), ("c", .double(512)), ("d", .string("caf\u{e9} \"q\"\n")),
            ("e", .array([.null, .bool(true), .double(1e-5)])), ("f", .object([])),
        ])
        let text = value.jsonText
        #expect(text.contains("\"c\": 512.0"))
        #expect(try JSONValue.parse(text) == value)
        #expect(throws: JSONParseError.self) { try JSONValue.parse("{\"a\": [1, 2}") }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(String(repeating: "[", count: 100_000)) }
    }

    @Test("Sample(json:) reads back every key the encoder wrote")
    func decode() async throws {
        let dicts = try await runDicts([CPUMeter()], [[snapshot(cpu: 77, nova: Self.nova)]], secret: "x")
        let written = try #require(dicts[0].first)
        let decoded = try #require(Sample(json: written))
        #expect(decoded.oracleJSON == written)
        #expect(decoded.volume == .int(77) && decoded.name == "cpu" && decoded.userID == "u1")
    }
}

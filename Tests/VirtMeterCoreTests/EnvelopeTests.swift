import CChecksum
import Foundation
import Testing
import VirtMeterTestSupport
@testable import VirtMeterCore

/// One AMQP body exactly as ceilometer sent it (the fixture beside these tests).
func wireExample() throws -> [UInt8] { Array(try fixture("ceilometer-wire-example").utf8) }

@Suite("oslo.messaging 2.0 envelope")
struct EnvelopeTests {
    @Test("ceilometer's own message decodes and all 6 signatures verify")
    func decodesCeilometerMessage() throws {
        let envelope = try NotificationEnvelope.decode(try wireExample())
        #expect(envelope.eventType == "telemetry.polling")
        #expect(envelope.priority == "SAMPLE")
        #expect(envelope.publisherID == "ceilometer.polling")
        #expect(envelope.uniqueID.count == 32)
        let samples = try envelope.samples()
        #expect(samples.count == 6)
        let signer = SampleSigner(secret: "change this for valid signing")
        #expect(samples.allSatisfy { $0.verify(with: signer) })
        #expect(samples.allSatisfy { $0.sample != nil })
        #expect(samples.map { $0.sample?.name } == ["cpu", "memory.usage", "vcpus", "power.state",
                                                   "disk.device.read.bytes", "network.incoming.bytes"])
        #expect(!samples.contains { $0.verify(with: SampleSigner(secret: "another secret")) })
    }

    @Test("an envelope made here has oslo's fields and decodes back to the same samples, signatures intact")
    func roundTrip() throws {
        let original = try NotificationEnvelope.decode(try wireExample()).samples().compactMap(\.sample)
        let signer = SampleSigner(secret: "change this for valid signing")
        let records = encodedRecords(original, signer: signer)
        #expect(records.spans.count == 1)
        let body = NotificationEnvelope.sampleBody(records.payload(0), wallNanoseconds: 1_790_000_000_123_456_000)
        let outer = try JSONValue.parse(bytes: body)
        guard case .object(let pairs) = outer else { Issue.record("not an object"); return }
        #expect(pairs.map(\.0) == ["oslo.version", "oslo.message"])
        #expect(outer["oslo.version"] == .string("2.0"))
        let inner = try JSONValue.parse(try #require(outer["oslo.message"]?.stringValue))
        guard case .object(let innerPairs) = inner else { Issue.record("inner not an object"); return }
        #expect(innerPairs.map(\.0) == ["message_id", "publisher_id", "event_type", "priority", "payload",
                                        "timestamp", "_unique_id"])
        let back = try NotificationEnvelope.decode(body)
        #expect(back.timestamp == "2026-09-21 14:13:20.123456")
        #expect(back.uniqueID.count == 32 && back.uniqueID.allSatisfy(\.isHexDigit))
        #expect(back.messageID.count == 36 && Array(back.messageID)[14] == "4")
        #expect(back.publisherID == "ceilometer.polling" && back.eventType == "telemetry.polling")
        let samples = try back.samples()
        #expect(samples.map(\.json) == original.map { $0.oracleSigned(with: signer).oracleJSON })
        #expect(samples.allSatisfy { $0.verify(with: signer) })
        // The tree path (for tools) writes an envelope that decodes to the same thing.
        #expect(try NotificationEnvelope.decode(back.body) == back)
    }

    @Test("malformed bodies are errors, never a crash", arguments: [
        "", "not json", "[]", "{}", "{\"oslo.version\": \"1.0\", \"oslo.message\": \"{}\"}",
        "{\"oslo.version\": \"2.0\"}", "{\"oslo.version\": \"2.0\", \"oslo.message\": 5}",
        "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{not json\"}",
        "{\"oslo.version\": \"2.0\", \"oslo.message\": \"[1, 2]\"}",
        "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"payload\\\": {}}\"}",
        String(repeating: "[", count: 100_000), "{\"oslo.version\": \"2.0\", \"oslo.message\": \"\\ud800\"}",
    ])
    func malformed(text: String) {
        #expect(throws: EnvelopeError.self) { try NotificationEnvelope.decode(Array(text.utf8)) }
    }

    @Test("a payload without a samples list is an error; a bad sample dict is kept with no Sample")
    func badPayload() throws {
        var envelope = try NotificationEnvelope.decode(try wireExample())
        envelope.payload = .object([("other", .int(1))])
        #expect(throws: EnvelopeError.missingField("payload.samples")) { try envelope.samples() }
        envelope.payload = .object([("samples", .array([.int(3), .object([("counter_name", .string("x"))])]))])
        let samples = try envelope.samples()
        #expect(samples.count == 2 && samples.allSatisfy { $0.sample == nil })
        #expect(!samples[0].verify(with: SampleSigner(secret: "s")))
    }

    @Test("invalid UTF-8 in a body is an error or decoded lossily, never a crash")
    func invalidUTF8() {
        let body: [UInt8] = Array("{\"oslo.version\": \"2.0\", \"oslo.message\": \"".utf8) + [0xFF, 0xFE]
            + Array("\"}".utf8)
        #expect(throws: EnvelopeError.self) { try NotificationEnvelope.decode(body) }
    }
}

@Suite("the sample wire form: encoder against the tree oracle")
struct GoldenTests {
    static let signer = SampleSigner(secret: "change this for valid signing")

    /// Domains as nova 1.1, nova 1.0 (no owner names), no metadata at all, and a display name far from ASCII.
    static func domains() -> [DomainSnapshot] {
        let nova11 = SampleTests.nova
        var nova10 = SampleTests.nova
        nova10.flavor = Flavor(id: "1", name: "m1.tiny", vcpus: 1, ramMiB: 512, diskGiB: 1, ephemeralGiB: nil,
                               swapMiB: nil)
        var odd = SampleTests.nova
        odd.displayName = "caf\u{e9} \"quoted\" back\\slash tab\t 日本語 😀 \u{1}"
        var domains: [DomainSnapshot] = []
        for (index, nova) in [nova11, nova10, nil, odd].enumerated() {
            var domain = snapshot(uuid: "a6b2c4d8-1234-4e5f-9abc-def01234567\(index)", vcpus: 2, cpu: 7_000_000_123,
                                  at: 10, balloon: BalloonStats(actual: 2_097_152, available: 2_000_000,
                                                                unused: 1_234_567, usable: 1_000_001, rss: 333_333,
                                                                swapIn: 3, swapOut: 4),
                                  nova: nova)
            var disk = DiskStats(name: "vda")
            (disk.readBytes, disk.readRequests, disk.readTimeNs, disk.writeBytes) = (1, 2, 3, 4)
            (disk.writeRequests, disk.writeTimeNs, disk.capacity, disk.allocation, disk.physical) = (5, 6, 1 << 40, 7, 8)
            (disk.flushRequests, disk.flushTimeNs, disk.errors) = (9, 10, 0)
            domain.disks = [disk, DiskStats(name: "vdb")]
            domain.vcpuTimes = [VCPUTime(time: 1, wait: 2, delay: 3), VCPUTime(time: 4, wait: 5, delay: 6)]
            domain.perf = PerfStats(cpuCycles: 11, instructions: 12, cacheReferences: 13, cacheMisses: 14)
            var nic = InterfaceStats(name: "tap0b7c7d6e-11", mac: "fa:16:3e:00:00:02")
            (nic.rxBytes, nic.rxPackets, nic.rxErrors, nic.rxDrop) = (5, 6, 7, 8)
            (nic.txBytes, nic.txPackets, nic.txErrors, nic.txDrop) = (9, 10, 11, 12)
            domain.interfaces = [nic]
            domains.append(domain)
        }
        return domains
    }

    @Test("every meter, nova 1.1, 1.0, none: the bytes decode to the oracle's tree and carry the oracle's signature")
    func everyMeter() async throws {
        let first = Self.domains()
        let second = first.map { domain -> DomainSnapshot in
            var later = domain
            later.cpuTime = domain.cpuTime.map { $0 + 1_500_000_000 }
            later.vcpuTimes = domain.vcpuTimes.map { VCPUTime(time: $0.time, wait: $0.wait, delay: ($0.delay ?? 0) + 9) }
            later.monotonicTime += 3
            return later
        }
        let dicts = try await runDicts(MeterRegistry.builtIn.meters, [first, second],
                                       secret: "change this for valid signing", perRecord: 7).flatMap { $0 }
        let names = Set(dicts.compactMap { $0["counter_name"]?.stringValue })
        #expect(names == Set(MeterRegistry.builtIn.names), "every meter wrote samples")
        for dict in dicts {
            let sample = try #require(Sample(json: dict))
            // Decoded back, the sample is the oracle's tree key for key, in ceilometer's order ...
            #expect(sample.oracleJSON == dict)
            // ... and the signature is the one the oracle computes over that tree.
            #expect(sample.oracleSigned(with: Self.signer).signature == sample.signature, "\(sample.name)")
            #expect(!sample.signature.isEmpty)
        }
        let display = dicts.compactMap { $0["resource_metadata"]?["display_name"]?.stringValue }
        #expect(display.contains("caf\u{e9} \"quoted\" back\\slash tab\t 日本語 😀 \u{1}"))
    }

    @Test("a merged resource_metadata renders as the updated dict would, from pieces of the one it was merged into")
    func mergedMetadata() {
        let base: [(String, JSONValue)] = [("display_name", .string("vm")), ("flavor", .object([("ram", .int(512))])),
                                           ("state", .string("running")), ("vcpus", .int(2)), ("zeta", .null)]
        let extras: [[(String, JSONValue)]] = [
            [("disk_name", .string("vda"))],                                    // appended, sorts in the middle
            [("display_name", .string("other"))],                               // replaces the first key
            [("zeta", .int(1))],                                                // replaces the last key
            [("state", .string("paused")), ("aaa", .bool(true)), ("zzz", .string("z"))],
            [("cpu_number", .int(0)), ("cpu_number", .int(1))],                 // a repeated key: the last value
            [("flavor", .object([("ram", .int(1024)), ("disk", .int(1))]))],    // replaces a nested dict
        ]
        func updated(_ pairs: [(String, JSONValue)], _ extra: [(String, JSONValue)]) -> [(String, JSONValue)] {
            var result = pairs
            for (key, value) in extra {
                if let index = result.firstIndex(where: { $0.0 == key }) { result[index].1 = value }
                else { result.append((key, value)) }
            }
            return result
        }
        for pairs in [base, []] {
            let rendered = RenderedMetadata(pairs)
            for extra in extras {
                let merged = rendered.merged(with: extra)
                let expected = RenderedMetadata(updated(pairs, extra))
                #expect(merged.jsonText == expected.jsonText, "\(extra.map(\.0)) into \(pairs.count) keys")
                #expect(merged.signingText == expected.signingText, "\(extra.map(\.0)) into \(pairs.count) keys")
                #expect(merged.byteCount == expected.byteCount)
                // The JSON text decodes to the updated dict.
                let text = String(decoding: merged.jsonText, as: UTF8.self)
                let prefix = "\"resource_metadata\": "
                #expect(text.hasPrefix(prefix))
                #expect((try? JSONValue.parse(String(text.dropFirst(prefix.count))))
                        == .object(updated(pairs, extra)))
            }
        }
    }

    @Test("odd numbers: integers stay integers, floats in Python's repr; NaN and infinities are refused")
    func oddNumbers() throws {
        let base = Sample(source: "openstack", name: "x", type: .gauge, unit: "u", volume: .int(0), userID: nil,
                          projectID: nil, resourceID: "r", timestamp: "2026-11-27T00:00:00.000000",
                          resourceMetadata: .object([("f", .double(1e-05)), ("big", .double(1e16)),
                                                     ("list", .array([.int(-3), .string("x")])), ("n", .null),
                                                     ("t", .bool(true)), ("nested", .object([("e", .object([]))]))]),
                          messageID: "m", monotonicTime: 12.5)
        var writable: [Sample] = []
        for volume: Volume in [.int(Int64.max), .int(-1), .double(512), .double(1e-05), .double(1.2345678901234567e+19),
                               .double(0.1 + 0.2), .double(-0.0)] {
            var sample = base
            sample.volume = volume
            writable.append(sample)
        }
        let records = encodedRecords(writable, signer: Self.signer)
        let decoded = try records.decodedSamples()
        #expect(decoded.map(\.volume) == writable.map(\.volume))
        #expect(decoded.map(\.oracleJSON) == writable.map { $0.oracleSigned(with: Self.signer).oracleJSON })
        let text = String(decoding: records.bytes[records.spans[0].payload], as: UTF8.self)
        #expect(text.contains("\"counter_volume\": 512.0,") && text.contains("\"counter_volume\": 1e-05,"))
        #expect(text.contains("\"counter_volume\": 9223372036854775807,"))

        var encoder = SampleEncoder(signer: Self.signer)
        for bad in [Double.nan, .infinity, -.infinity] {
            var sample = base
            sample.volume = .double(bad)
            var out: [UInt8] = []
            #expect(!encoder.write(sample, to: &out) && out.isEmpty, "\(bad) refused")
        }
    }

    @Test("each escaping path (AVX-512, SSSE3, portable) equals a byte-at-a-time reference and stays in its buffer")
    func escapeMatchesReference() {
        #if arch(x86_64)
        // This CPU and CI's have SSSE3, and the dispatching function takes the AVX-512 path where the CPU has VBMI2
        // and BMI2 (then the SSSE3 path is tested through its own entry).
        #expect(virtmeter_escape_nested_vectorised() == (Self.cpuHasAVX512VBMI2 ? 2 : 1))
        #endif
        var generator = SystemRandomNumberGenerator()
        let specials = Array("\"\\\n".utf8)
        let alphabet = Array("ab\"\\\n: {}é".utf8), plain = Array("ab: {}é,".utf8)
        let dense: [[UInt8]] = [Array("\"".utf8), Array("\n".utf8), Array("\\".utf8), Array("\"a".utf8),
                                Array("\n\"".utf8), Array("a\\b\n".utf8), Array("ab".utf8), specials,
                                Array("\\\n\"\"é".utf8)]
        for length in 0...300 {
            for _ in 0..<(length < 70 ? 40 : 8) {
                Self.checkEscape((0..<length).map { _ in alphabet.randomElement(using: &generator)! })
            }
            for _ in 0..<2 {
                Self.checkEscape((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
                Self.checkEscape((0..<length).map { _ in specials.randomElement(using: &generator)! })
            }
            for pattern in dense {
                Self.checkEscape((0..<length).map { pattern[$0 % pattern.count] })
            }
            // Sparse, as sample JSON is: a special byte every 5 to 10 bytes among plain ones (some from 0x80).
            var sparse = (0..<length).map { _ in plain.randomElement(using: &generator)! }
            var place = Int.random(in: 0..<10, using: &generator)
            while place < length {
                sparse[place] = specials.randomElement(using: &generator)!
                place += Int.random(in: 5...10, using: &generator)
            }
            Self.checkEscape(sparse)
        }
        // One special byte at every place of plain runs as long as two 32-byte steps and a tail.
        for length in 1...70 {
            for place in 0..<length {
                for special in specials {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    bytes[place] = special
                    Self.checkEscape(bytes)
                }
            }
        }
    }

    @Test("the escaping pass's paths agree with the reference on real sample JSON, whole, sliced and at every length")
    func escapeRealSampleJSON() throws {
        let body = try wireExample()
        let message = try #require(try JSONValue.parse(bytes: body)["oslo.message"]?.stringValue)
        let samples = try NotificationEnvelope.decode(body).samples().compactMap(\.sample)
        // ceilometer's inner message as it sent it, and a record's payload: sample dicts separated by "\n".
        let texts = [Array(message.utf8), Array(encodedRecords(samples, signer: Self.signer).payload(0))]
        #expect(texts[1].count > 5_000 && texts[1].filter { $0 == 0x0A }.count == 5)
        for text in texts {
            // Every start within the first two steps (each alignment of the 32-byte blocks and their tail).
            for start in 0..<66 {
                Self.checkEscape(Array(text[start...]))
            }
            for length in 0...300 {
                Self.checkEscape(Array(text[..<length]))
                Self.checkEscape(Array(text[(text.count - length)...]))
            }
        }
    }

    /// Whether the kernel reports the CPU features of the escape's AVX-512 path.
    static let cpuHasAVX512VBMI2: Bool = {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Set(cpuinfo.split(whereSeparator: \.isWhitespace))
        return ["avx512bw", "avx512vl", "avx512_vbmi2", "bmi2"].allSatisfy { flags.contains(Substring($0)) }
    }()

    /// Escapes `bytes` with each path (the dispatching one, which is the AVX-512 path on a CPU that has it, SSSE3, the
    /// portable loop) into exactly twice its bytes followed by 96 guard bytes (more than a whole 64-byte store) that
    /// must stay untouched, and compares the result with a byte-at-a-time reference.
    static func checkEscape(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        var expected: [UInt8] = []
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): expected += [UInt8(ascii: "\\"), byte]
            case 0x0A: expected += Array(", ".utf8)
            default: expected.append(byte)
            }
        }
        let paths: [(String, (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UInt8>?) -> Int)] = [
            ("escapeNested", { NotificationEnvelope.escapeNested(UnsafeBufferPointer(start: $0, count: $1), to: $2!) }),
            ("ssse3", { virtmeter_escape_nested_ssse3($0, $1, $2) }),
            ("portable", { virtmeter_escape_nested_portable($0, $1, $2) }),
        ]
        for (name, escape) in paths {
            var out = [UInt8](repeating: 0xEE, count: 2 * bytes.count + 96)
            let count = bytes.withUnsafeBufferPointer { input in
                out.withUnsafeMutableBufferPointer { escape(input.baseAddress, input.count, $0.baseAddress) }
            }
            #expect(count == expected.count && Array(out[..<min(count, out.count)]) == expected, "\(name): \(bytes)",
                    sourceLocation: sourceLocation)
            #expect(out[(2 * bytes.count)...].allSatisfy { $0 == 0xEE }, "\(name) wrote past its buffer: \(bytes)",
                    sourceLocation: sourceLocation)
        }
    }

    @Test("the check whether a string needs escaping finds each special byte at every place, and nothing else")
    func needsEscapeAtEveryPlace() {
        let special: [UInt8] = [0x00, 0x01, 0x0A, 0x1F, 0x22, 0x5C]
        let plain: [UInt8] = [0x20, 0x21, 0x23, 0x2D, 0x5B, 0x5D, 0x7F, 0x80, 0xA2, 0xDC, 0xE0, 0xFF]
        for length in 0..<40 {
            for base in plain {
                let text = [UInt8](repeating: base, count: length)
                #expect(!text.withUnsafeBufferPointer(JSONBytes.needsEscape), "\(base) x \(length)")
                for place in 0..<length {
                    for byte in special + plain {
                        var changed = text
                        changed[place] = byte
                        #expect(changed.withUnsafeBufferPointer(JSONBytes.needsEscape) == special.contains(byte),
                                "\(byte) at \(place) of \(length)")
                    }
                }
            }
        }
    }

    @Test("random message ids: version 4, RFC 4122 variant, with and without dashes, none repeated")
    func randomUUIDs() {
        // More ids than one read of random bytes serves (256), so the pool is refilled on the way.
        let ids = (0..<1_000).map { RandomUUID.string(dashes: $0 % 2 == 0) }
        #expect(Set(ids).count == ids.count)
        for (index, id) in ids.enumerated() {
            let digits = Array(id.filter { $0 != "-" })
            #expect(digits.count == 32 && digits.allSatisfy { $0.isHexDigit && !$0.isUppercase }, "\(id)")
            #expect(digits[12] == "4" && "89ab".contains(digits[16]), "\(id)")
            if index % 2 == 0 {
                #expect(id.count == 36 && [8, 13, 18, 23].allSatisfy { Array(id)[$0] == "-" }, "\(id)")
            } else {
                #expect(id.count == 32, "\(id)")
            }
        }
    }

    @Test("a record's payload is JSON lines as it stands, and one escaping pass makes it the envelope's list")
    func payloadShapes() throws {
        let samples = try NotificationEnvelope.decode(try wireExample()).samples().compactMap(\.sample)
        let records = encodedRecords(samples, signer: Self.signer, perRecord: 4)
        #expect(records.spans.map(\.samples) == [4, 2])
        let lines = records.jsonLines.split(separator: UInt8(ascii: "\n"))
        #expect(lines.count == 6)
        #expect(try lines.map { try JSONValue.parse(bytes: Array($0)) } == records.decodedDicts())
        for index in records.spans.indices {
            let envelope = try NotificationEnvelope.decode(NotificationEnvelope.sampleBody(records.payload(index)))
            let expected = records.sampleDicts.dropFirst(index * 4).prefix(records.spans[index].samples)
            #expect(try envelope.samples().map(\.json) == expected.map { try JSONValue.parse(bytes: Array($0)) })
        }
    }
}

import Foundation
import Testing
import VirtMeterCore

/// The wire example beside Core's tests: one AMQP body exactly as ceilometer sent it.
let wireExamplePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("VirtMeterCoreTests/Fixtures/ceilometer-wire-example.json").path

@Suite("oslo.messaging 2.0 envelope")
struct EnvelopeTests {
    @Test("ceilometer's own message decodes and all 6 signatures verify")
    func decodesCeilometerMessage() throws {
        let body = try #require(FileManager.default.contents(atPath: wireExamplePath))
        let envelope = try NotificationEnvelope.decode(Array(body))
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

    @Test("an envelope made here has oslo's fields and decodes back to the same samples")
    func roundTrip() throws {
        let body = try #require(FileManager.default.contents(atPath: wireExamplePath))
        let original = try NotificationEnvelope.decode(Array(body)).samples().compactMap(\.sample)
        let envelope = NotificationEnvelope(samples: original, wallNanoseconds: 1_790_000_000_123_456_000)
        #expect(envelope.timestamp == "2026-09-21 14:13:20.123456")
        #expect(envelope.uniqueID.count == 32 && envelope.uniqueID.allSatisfy(\.isHexDigit))
        #expect(envelope.messageID.count == 36 && Array(envelope.messageID)[14] == "4")
        let outer = try JSONValue.parse(envelope.body)
        guard case .object(let pairs) = outer else { Issue.record("not an object"); return }
        #expect(pairs.map(\.0) == ["oslo.version", "oslo.message"])
        #expect(outer["oslo.version"] == .string("2.0"))
        let inner = try JSONValue.parse(try #require(outer["oslo.message"]?.stringValue))
        guard case .object(let innerPairs) = inner else { Issue.record("inner not an object"); return }
        #expect(innerPairs.map(\.0) == ["message_id", "publisher_id", "event_type", "priority", "payload",
                                        "timestamp", "_unique_id"])
        let back = try NotificationEnvelope.decode(Array(envelope.body.utf8))
        #expect(back == envelope)
        let signer = SampleSigner(secret: "change this for valid signing")
        #expect(try back.samples().allSatisfy { $0.verify(with: signer) })
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
        var envelope = NotificationEnvelope(samples: [])
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

@Suite("envelope writer")
struct EnvelopeWriterTests {
    @Test("sampleBody writes exactly what the JSON tree gives, including escapes and odd numbers")
    func sampleBodyMatchesTree() throws {
        let body = try #require(FileManager.default.contents(atPath: wireExamplePath))
        var samples = try NotificationEnvelope.decode(Array(body)).samples().compactMap(\.sample)
        samples[0].resourceMetadata = .object([("quote\"back\\slash", .string("tab\tnew\nline\u{1}é😀")),
                                               ("n", .null), ("t", .bool(true)), ("f", .double(1e-05)),
                                               ("big", .double(1e16)), ("list", .array([.int(-3), .string("x")]))])
        samples[1].userID = nil
        samples[2].volume = .double(.nan)
        let fast = NotificationEnvelope.sampleBody(samples[...], publisherID: "p", wallNanoseconds: 0)
        let decoded = try NotificationEnvelope.decode(fast)
        let expected = samples.map(\.json)
        #expect(decoded.payload == .object([("samples", .array(expected))]) || samples[2].volume != samples[2].volume)
        let dicts = try decoded.samples().map(\.json)
        #expect(dicts[0] == expected[0])
        #expect(dicts[1] == expected[1])
        #expect(dicts[2]["counter_volume"] == .null)
        #expect(Array(dicts[3...]) == Array(expected[3...]))
        #expect(decoded.publisherID == "p" && decoded.timestamp == "1970-01-01 00:00:00.000000")
        // The tree writer and the byte writer agree on the whole text (apart from the non-finite volume).
        samples[2].volume = .int(7)
        var envelope = try NotificationEnvelope.decode(NotificationEnvelope.sampleBody(samples[...]))
        let text = String(decoding: NotificationEnvelope.sampleBody(samples[...]), as: UTF8.self)
        envelope.payload = .object([("samples", .array(samples.map(\.json)))])
        #expect(try JSONValue.parse(text)["oslo.version"] == .string("2.0"))
        #expect(try NotificationEnvelope.decode(envelope.bodyBytes).payload == envelope.payload)
        let inner = try JSONValue.parse(try #require(try JSONValue.parse(envelope.body)["oslo.message"]?.stringValue))
        #expect(inner == envelope.message)
    }
}

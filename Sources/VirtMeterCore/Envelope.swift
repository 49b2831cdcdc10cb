import CChecksum

/// An oslo.messaging notification in its 2.0 envelope, as ceilometer's polling agent puts it on the bus:
/// `{"oslo.version": "2.0", "oslo.message": "<inner JSON as a string>"}`.
package struct NotificationEnvelope: Sendable, Equatable {
    /// Random (v4) UUID of this notification.
    package var messageID: String
    /// Who sent it (`ceilometer.polling`).
    package var publisherID: String
    /// `telemetry.polling` for samples.
    package var eventType: String
    /// `SAMPLE` for samples.
    package var priority: String
    /// The notification's payload: `{"samples": [...]}` for samples.
    package var payload: JSONValue
    /// UTC `YYYY-MM-DD HH:MM:SS.ffffff` (a space, no zone).
    package var timestamp: String
    /// oslo.messaging's duplicate detector: a random UUID as 32 hex digits.
    package var uniqueID: String

    /// The event type of ceilometer's polling samples.
    package static let pollingEventType = "telemetry.polling"
    /// The publisher id ceilometer's polling agent uses.
    package static let defaultPublisherID = "ceilometer.polling"
    /// The priority of sample notifications; the routing key is `<topic>.sample`.
    package static let samplePriority = "SAMPLE"

    /// An envelope with every field given.
    package init(messageID: String, publisherID: String, eventType: String, priority: String, payload: JSONValue,
                timestamp: String, uniqueID: String) {
        self.messageID = messageID
        self.publisherID = publisherID
        self.eventType = eventType
        self.priority = priority
        self.payload = payload
        self.timestamp = timestamp
        self.uniqueID = uniqueID
    }

    /// The inner message, in oslo.messaging's key order.
    package var message: JSONValue {
        .object([
            ("message_id", .string(messageID)), ("publisher_id", .string(publisherID)),
            ("event_type", .string(eventType)), ("priority", .string(priority)), ("payload", payload),
            ("timestamp", .string(timestamp)), ("_unique_id", .string(uniqueID)),
        ])
    }

    /// The AMQP body: the outer JSON object with the inner message encoded as a string (written from the JSON
    /// tree: for tools and tests; samples are published with `sampleBody`).
    package var body: [UInt8] {
        Array(JSONValue.object([("oslo.version", .string("2.0")), ("oslo.message", .string(message.jsonText))])
            .jsonText.utf8)
    }

    /// The body of the `telemetry.polling` notification that carries the samples of one record (`payload`: sample
    /// dicts separated by "\n", see `SampleRecords`), with fresh ids and the time now. The samples' bytes are
    /// copied once, escaped as the content of the `oslo.message` string on the way, and never parsed.
    package static func sampleBody(_ payload: ArraySlice<UInt8>, publisherID: String = defaultPublisherID,
                                  wallNanoseconds: Int64 = SampleClock.wallNanoseconds()) -> [UInt8] {
        var body: [UInt8] = []
        writeSampleBody(payload, publisherID: publisherID, wallNanoseconds: wallNanoseconds, to: &body)
        return body
    }

    /// `sampleBody`, written over `body`, whose storage is kept: the publisher hands its buffers round rather than
    /// touching new memory for every message.
    package static func writeSampleBody(_ payload: ArraySlice<UInt8>, publisherID: String = defaultPublisherID,
                                       wallNanoseconds: Int64 = SampleClock.wallNanoseconds(),
                                       to body: inout [UInt8]) {
        var inner: [UInt8] = [UInt8(ascii: "{")]
        inner.reserveCapacity(256)
        func field(_ key: String, _ value: String) {
            JSONBytes.string(key, to: &inner)
            inner += Array(": ".utf8)
            JSONBytes.string(value, to: &inner)
            inner += Array(", ".utf8)
        }
        field("message_id", RandomUUID.string())
        field("publisher_id", publisherID)
        field("event_type", pollingEventType)
        field("priority", samplePriority)
        inner += Array("\"payload\": {\"samples\": [".utf8)
        let head = inner
        inner = Array("]}, ".utf8)
        field("timestamp", SampleClock.utcTimestamp(nanoseconds: wallNanoseconds, separator: " "))
        JSONBytes.string("_unique_id", to: &inner)
        inner += Array(": ".utf8)
        JSONBytes.string(RandomUUID.string(dashes: false), to: &inner)
        inner.append(UInt8(ascii: "}"))

        let opening = Array("{\"oslo.version\": \"2.0\", \"oslo.message\": \"".utf8), closing = Array("\"}".utf8)
        let bound = opening.count + 2 * (head.count + payload.count + inner.count) + closing.count
        body.removeAll(keepingCapacity: true)
        body.append(addingCapacity: bound) { span in
            span.withUnsafeMutableBufferPointer { out, count in
                let base = out.baseAddress!
                var position = opening.withUnsafeBufferPointer { copy($0, to: base) }
                for part in [head[...], payload, inner[...]] {
                    position += part.withUnsafeBufferPointer { escapeNested($0, to: base + position) }
                }
                position += closing.withUnsafeBufferPointer { copy($0, to: base + position) }
                count = position
            }
        }
    }

    private static func copy(_ bytes: UnsafeBufferPointer<UInt8>, to destination: UnsafeMutablePointer<UInt8>)
        -> Int {
        destination.update(from: bytes.baseAddress!, count: bytes.count)
        return bytes.count
    }

    /// Writes `json` as the content of a JSON string at `destination` (room for twice its bytes, none written past
    /// them): a backslash before every quote and backslash, and ", " for every "\n" (the separator of a record's
    /// sample dicts). Returns the bytes written. This runs over every byte that goes on the bus: the C target expands
    /// 32 bytes per step with an AVX-512 VBMI2 byte expand, or 8 with an SSSE3 shuffle (`virtmeter_escape_nested`).
    static func escapeNested(_ json: UnsafeBufferPointer<UInt8>, to destination: UnsafeMutablePointer<UInt8>) -> Int {
        virtmeter_escape_nested(json.baseAddress, json.count, destination)
    }

    /// Reads an AMQP body. Never traps: anything that is not a 2.0 envelope with a well-formed inner message is an
    /// `EnvelopeError` saying what is wrong.
    package static func decode(_ body: [UInt8]) throws(EnvelopeError) -> NotificationEnvelope {
        let outer: JSONValue
        do {
            outer = try JSONValue.parse(bytes: body)
        } catch {
            throw .invalidJSON("body: \(error)")
        }
        guard case .object = outer else { throw .notAnEnvelope("the body is not a JSON object") }
        guard let version = outer["oslo.version"] else { throw .notAnEnvelope("no \"oslo.version\"") }
        guard version == .string("2.0") else { throw .unsupportedVersion(version.jsonText) }
        guard let innerText = outer["oslo.message"]?.stringValue else {
            throw .notAnEnvelope("\"oslo.message\" is missing or not a string")
        }
        let inner: JSONValue
        do {
            inner = try JSONValue.parse(innerText)
        } catch {
            throw .invalidJSON("oslo.message: \(error)")
        }
        guard case .object = inner else { throw .notAnEnvelope("\"oslo.message\" is not a JSON object") }
        func field(_ key: String) throws(EnvelopeError) -> String {
            guard let value = inner[key]?.stringValue else { throw .missingField(key) }
            return value
        }
        guard let payload = inner["payload"] else { throw .missingField("payload") }
        return NotificationEnvelope(
            messageID: try field("message_id"), publisherID: try field("publisher_id"),
            eventType: try field("event_type"), priority: try field("priority"), payload: payload,
            timestamp: try field("timestamp"), uniqueID: inner["_unique_id"]?.stringValue ?? "")
    }

    /// The sample dicts of a `{"samples": [...]}` payload, each with the `Sample` read from it (nil where the dict
    /// lacks a required key). Throws when the payload has no samples list.
    package func samples() throws(EnvelopeError) -> [DecodedSample] {
        guard case .array(let items)? = payload["samples"] else {
            throw .missingField("payload.samples")
        }
        return items.map { DecodedSample(json: $0) }
    }
}

/// One sample dict from a notification: the JSON exactly as received (what its signature covers) and the sample.
package struct DecodedSample: Sendable {
    /// The sample dict as decoded, in received key order.
    package let json: JSONValue
    /// The sample, or nil when the dict is not a valid sample.
    package let sample: Sample?

    /// Reads `json` as a sample dict.
    package init(json: JSONValue) {
        self.json = json
        self.sample = Sample(json: json)
    }

    /// Whether the dict's `message_signature` matches `signer`'s signature of it.
    package func verify(with signer: SampleSigner) -> Bool { signer.verify(json) }
}

/// Why an AMQP body is not an oslo.messaging 2.0 notification.
package enum EnvelopeError: Error, Equatable, CustomStringConvertible {
    /// The body or the inner message is not valid JSON.
    case invalidJSON(String)
    /// The JSON does not have the envelope's shape.
    case notAnEnvelope(String)
    /// `oslo.version` is not "2.0".
    case unsupportedVersion(String)
    /// A required field of the inner message is missing or of the wrong type.
    case missingField(String)

    /// One line saying what is wrong.
    package var description: String {
        switch self {
        case .invalidJSON(let detail): return "malformed message: invalid JSON in \(detail)"
        case .notAnEnvelope(let detail): return "malformed message: not an oslo.messaging envelope (\(detail))"
        case .unsupportedVersion(let version): return "malformed message: unsupported oslo.version \(version)"
        case .missingField(let key): return "malformed message: missing or mistyped field \(key)"
        }
    }
}

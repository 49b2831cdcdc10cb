/// An oslo.messaging notification in its 2.0 envelope, as ceilometer's polling agent puts it on the bus:
/// `{"oslo.version": "2.0", "oslo.message": "<inner JSON as a string>"}`.
public struct NotificationEnvelope: Sendable, Equatable {
    /// Random (v4) UUID of this notification.
    public var messageID: String
    /// Who sent it (`ceilometer.polling`).
    public var publisherID: String
    /// `telemetry.polling` for samples.
    public var eventType: String
    /// `SAMPLE` for samples.
    public var priority: String
    /// The notification's payload: `{"samples": [...]}` for samples.
    public var payload: JSONValue
    /// UTC `YYYY-MM-DD HH:MM:SS.ffffff` (a space, no zone).
    public var timestamp: String
    /// oslo.messaging's duplicate detector: a random UUID as 32 hex digits.
    public var uniqueID: String

    /// The event type of ceilometer's polling samples.
    public static let pollingEventType = "telemetry.polling"
    /// The publisher id ceilometer's polling agent uses.
    public static let defaultPublisherID = "ceilometer.polling"
    /// The priority of sample notifications; the routing key is `<topic>.sample`.
    public static let samplePriority = "SAMPLE"

    /// An envelope with every field given.
    public init(messageID: String, publisherID: String, eventType: String, priority: String, payload: JSONValue,
                timestamp: String, uniqueID: String) {
        self.messageID = messageID
        self.publisherID = publisherID
        self.eventType = eventType
        self.priority = priority
        self.payload = payload
        self.timestamp = timestamp
        self.uniqueID = uniqueID
    }

    /// The `telemetry.polling` notification that carries `samples`, with fresh ids and the current time.
    public init(samples: [Sample], publisherID: String = defaultPublisherID,
                wallNanoseconds: Int64 = Clock.wallNanoseconds()) {
        self.init(messageID: UUIDv1Generator.random(), publisherID: publisherID, eventType: Self.pollingEventType,
                  priority: Self.samplePriority, payload: .object([("samples", .array(samples.map(\.json)))]),
                  timestamp: Clock.utcTimestamp(nanoseconds: wallNanoseconds, separator: " "),
                  uniqueID: UUIDv1Generator.random().filter { $0 != "-" })
    }

    /// The inner message, in oslo.messaging's key order.
    public var message: JSONValue {
        .object([
            ("message_id", .string(messageID)), ("publisher_id", .string(publisherID)),
            ("event_type", .string(eventType)), ("priority", .string(priority)), ("payload", payload),
            ("timestamp", .string(timestamp)), ("_unique_id", .string(uniqueID)),
        ])
    }

    /// The AMQP body: the outer JSON object with the inner message encoded as a string.
    public var body: String {
        let inner = message.jsonText
        var out = "{\"oslo.version\": \"2.0\", \"oslo.message\": "
        out.reserveCapacity(inner.utf8.count + inner.utf8.count / 8 + 64)
        JSONValue.writeString(inner, to: &out)
        out += "}"
        return out
    }

    /// Reads an AMQP body. Never traps: anything that is not a 2.0 envelope with a well-formed inner message is an
    /// `EnvelopeError` saying what is wrong.
    public static func decode(_ body: [UInt8]) throws(EnvelopeError) -> NotificationEnvelope {
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
    public func samples() throws(EnvelopeError) -> [DecodedSample] {
        guard case .array(let items)? = payload["samples"] else {
            throw .missingField("payload.samples")
        }
        return items.map { DecodedSample(json: $0) }
    }
}

/// One sample dict from a notification: the JSON exactly as received (what its signature covers) and the sample.
public struct DecodedSample: Sendable {
    /// The sample dict as decoded, in received key order.
    public let json: JSONValue
    /// The sample, or nil when the dict is not a valid sample.
    public let sample: Sample?

    /// Reads `json` as a sample dict.
    public init(json: JSONValue) {
        self.json = json
        self.sample = Sample(json: json)
    }

    /// Whether the dict's `message_signature` matches `signer`'s signature of it.
    public func verify(with signer: SampleSigner) -> Bool { signer.verify(json) }
}

/// Why an AMQP body is not an oslo.messaging 2.0 notification.
public enum EnvelopeError: Error, Equatable, CustomStringConvertible {
    /// The body or the inner message is not valid JSON.
    case invalidJSON(String)
    /// The JSON does not have the envelope's shape.
    case notAnEnvelope(String)
    /// `oslo.version` is not "2.0".
    case unsupportedVersion(String)
    /// A required field of the inner message is missing or of the wrong type.
    case missingField(String)

    /// One line saying what is wrong.
    public var description: String {
        switch self {
        case .invalidJSON(let detail): return "malformed message: invalid JSON in \(detail)"
        case .notAnEnvelope(let detail): return "malformed message: not an oslo.messaging envelope (\(detail))"
        case .unsupportedVersion(let version): return "malformed message: unsupported oslo.version \(version)"
        case .missingField(let key): return "malformed message: missing or mistyped field \(key)"
        }
    }
}

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
    public var body: String { String(decoding: bodyBytes, as: UTF8.self) }

    /// The AMQP body as UTF-8 bytes, written in one pass (the inner message escaped as it is written).
    public var bodyBytes: [UInt8] {
        var writer = EnvelopeWriter()
        writer.envelope(messageID: messageID, publisherID: publisherID, eventType: eventType, priority: priority,
                        timestamp: timestamp, uniqueID: uniqueID) { $0.value(payload) }
        return writer.out
    }

    /// The body of the `telemetry.polling` notification that carries `samples`, written straight from the samples
    /// (no intermediate JSON tree): what `NotificationEnvelope(samples:...).bodyBytes` gives, faster.
    public static func sampleBody(_ samples: ArraySlice<Sample>, publisherID: String = defaultPublisherID,
                                  wallNanoseconds: Int64 = Clock.wallNanoseconds()) -> [UInt8] {
        var writer = EnvelopeWriter()
        writer.out.reserveCapacity(samples.count * 1400 + 512)
        writer.envelope(messageID: UUIDv1Generator.random(), publisherID: publisherID, eventType: pollingEventType,
                        priority: samplePriority,
                        timestamp: Clock.utcTimestamp(nanoseconds: wallNanoseconds, separator: " "),
                        uniqueID: UUIDv1Generator.random().filter { $0 != "-" }) { writer in
            writer.raw(UInt8(ascii: "{"))
            writer.string("samples")
            writer.ascii(": [")
            for (index, sample) in samples.enumerated() {
                if index > 0 { writer.ascii(", ") }
                writer.sample(sample)
            }
            writer.ascii("]}")
        }
        return writer.out
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

/// Writes an envelope's JSON as bytes. The inner message is written `nested`: every quote and backslash it
/// produces is escaped on the way out, so it lands in the outer object as a JSON string in the same pass.
struct EnvelopeWriter {
    var out: [UInt8] = []
    var nested = false

    /// The outer object around the inner message, whose payload `payload` writes.
    mutating func envelope(messageID: String, publisherID: String, eventType: String, priority: String,
                           timestamp: String, uniqueID: String, payload: (inout EnvelopeWriter) -> Void) {
        ascii("{\"oslo.version\": \"2.0\", \"oslo.message\": \"")
        nested = true
        ascii("{")
        for (key, value) in [("message_id", messageID), ("publisher_id", publisherID), ("event_type", eventType),
                             ("priority", priority)] {
            string(key)
            ascii(": ")
            string(value)
            ascii(", ")
        }
        string("payload")
        ascii(": ")
        payload(&self)
        ascii(", ")
        string("timestamp")
        ascii(": ")
        string(timestamp)
        ascii(", ")
        string("_unique_id")
        ascii(": ")
        string(uniqueID)
        ascii("}")
        nested = false
        ascii("\"}")
    }

    /// One byte of JSON syntax (escaped when nested).
    @inline(__always)
    mutating func raw(_ byte: UInt8) {
        if nested && (byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")) { out.append(UInt8(ascii: "\\")) }
        out.append(byte)
    }

    mutating func ascii(_ text: StaticString) {
        let bytes = UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        for byte in bytes { raw(byte) }
    }

    /// A JSON string: quotes, and escapes for quote, backslash and control characters (UTF-8 passes through).
    mutating func string(_ text: String) {
        raw(UInt8(ascii: "\""))
        let done: Void? = text.utf8.withContiguousStorageIfAvailable { bytes in
            for byte in bytes { content(byte) }
        }
        if done == nil { for byte in text.utf8 { content(byte) } }
        raw(UInt8(ascii: "\""))
    }

    @inline(__always)
    private mutating func content(_ byte: UInt8) {
        if byte >= 0x20 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
            out.append(byte)
            return
        }
        raw(UInt8(ascii: "\\"))
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): raw(byte)
        case 0x0A: raw(UInt8(ascii: "n"))
        case 0x0D: raw(UInt8(ascii: "r"))
        case 0x09: raw(UInt8(ascii: "t"))
        default:
            let digits: StaticString = "0123456789abcdef"
            for b in [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), digits.utf8Start[Int(byte >> 4)],
                      digits.utf8Start[Int(byte & 0xF)]] {
                raw(b)
            }
        }
    }

    mutating func number(_ text: String) {
        out.append(contentsOf: text.utf8)
    }

    mutating func value(_ value: JSONValue) {
        switch value {
        case .null: ascii("null")
        case .bool(let flag): if flag { ascii("true") } else { ascii("false") }
        case .int(let int): number(String(int))
        case .double(let double): if double.isFinite { number(PythonRepr.float(double)) } else { ascii("null") }
        case .string(let text): string(text)
        case .array(let items):
            raw(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { ascii(", ") }
                self.value(item)
            }
            raw(UInt8(ascii: "]"))
        case .object(let pairs):
            raw(UInt8(ascii: "{"))
            for (index, (key, item)) in pairs.enumerated() {
                if index > 0 { ascii(", ") }
                string(key)
                ascii(": ")
                self.value(item)
            }
            raw(UInt8(ascii: "}"))
        }
    }

    /// `"name": `, after `, ` unless it opens the object.
    private mutating func key(_ name: StaticString, first: Bool = false) {
        if !first { ascii(", ") }
        ascii("\"")
        ascii(name)
        ascii("\": ")
    }

    private mutating func optional(_ text: String?) {
        if let text { string(text) } else { ascii("null") }
    }

    private mutating func float(_ value: Double) {
        if value.isFinite { number(PythonRepr.float(value)) } else { ascii("null") }
    }

    /// A sample dict in `Sample.json`'s key order (tests check the two agree), without building the JSON tree.
    mutating func sample(_ sample: Sample) {
        raw(UInt8(ascii: "{"))
        key("source", first: true)
        string(sample.source)
        key("counter_name")
        string(sample.name)
        key("counter_type")
        string(sample.type.rawValue)
        key("counter_unit")
        string(sample.unit)
        key("counter_volume")
        switch sample.volume {
        case .int(let int): number(String(int))
        case .double(let double): float(double)
        }
        key("user_id")
        optional(sample.userID)
        key("user_name")
        ascii("null")
        key("project_id")
        optional(sample.projectID)
        key("project_name")
        ascii("null")
        key("resource_id")
        string(sample.resourceID)
        key("timestamp")
        string(sample.timestamp)
        key("resource_metadata")
        value(sample.resourceMetadata)
        key("message_id")
        string(sample.messageID)
        key("monotonic_time")
        float(sample.monotonicTime)
        key("message_signature")
        string(sample.signature)
        raw(UInt8(ascii: "}"))
    }
}

/// Ceilometer's counter types.
public enum SampleType: String, Sendable {
    case gauge, cumulative, delta
}

/// A sample's number: integers stay integers on the wire (`123456789000`), floats are floats (`387.890625`).
public enum Volume: Sendable, Equatable {
    case int(Int64)
    case double(Double)

    /// The volume as a Double, for arithmetic and comparisons.
    public var doubleValue: Double {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        }
    }

    /// A counter read from libvirt, clamped into Int64 (libvirt's counters are unsigned 64-bit).
    public static func counter(_ value: UInt64) -> Volume { .int(Int64(clamping: value)) }

    var json: JSONValue {
        switch self {
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        }
    }
}

/// What a meter measured for one resource, before it is stamped into a wire `Sample`.
public struct Reading: Sendable {
    public var volume: Volume
    /// The resource's id; nil means the domain's uuid.
    public var resourceID: String?
    /// Keys that this meter adds to the domain's resource_metadata, or replaces in it (`cpu_number`, `disk_name`).
    public var metadata: [(String, JSONValue)]

    public init(_ volume: Volume, resourceID: String? = nil, metadata: [(String, JSONValue)] = []) {
        self.volume = volume
        self.resourceID = resourceID
        self.metadata = metadata
    }
}

/// One sample as ceilometer puts it on the bus: every key of its sample dict.
public struct Sample: Sendable {
    public var source: String
    public var name: String
    public var type: SampleType
    public var unit: String
    public var volume: Volume
    public var userID: String?
    public var projectID: String?
    public var resourceID: String
    /// UTC, `YYYY-MM-DDTHH:MM:SS.ffffff`.
    public var timestamp: String
    public var resourceMetadata: JSONValue
    /// A time-based (v1) UUID.
    public var messageID: String
    public var monotonicTime: Double
    public var signature: String

    public init(source: String, name: String, type: SampleType, unit: String, volume: Volume, userID: String?,
                projectID: String?, resourceID: String, timestamp: String, resourceMetadata: JSONValue,
                messageID: String, monotonicTime: Double, signature: String = "") {
        self.source = source
        self.name = name
        self.type = type
        self.unit = unit
        self.volume = volume
        self.userID = userID
        self.projectID = projectID
        self.resourceID = resourceID
        self.timestamp = timestamp
        self.resourceMetadata = resourceMetadata
        self.messageID = messageID
        self.monotonicTime = monotonicTime
        self.signature = signature
    }

    /// The sample dict in ceilometer's key order, with `message_signature` last.
    public var json: JSONValue {
        .object(unsignedPairs + [("message_signature", .string(signature))])
    }

    /// The sample dict without its signature: what is signed.
    var unsignedPairs: [(String, JSONValue)] {
        [
            ("source", .string(source)),
            ("counter_name", .string(name)),
            ("counter_type", .string(type.rawValue)),
            ("counter_unit", .string(unit)),
            ("counter_volume", volume.json),
            ("user_id", .string(userID)),
            ("user_name", .null),
            ("project_id", .string(projectID)),
            ("project_name", .null),
            ("resource_id", .string(resourceID)),
            ("timestamp", .string(timestamp)),
            ("resource_metadata", resourceMetadata),
            ("message_id", .string(messageID)),
            ("monotonic_time", .double(monotonicTime)),
        ]
    }

    /// Signs the sample in place with `signer` (the empty string when the signer has no secret).
    public mutating func sign(with signer: SampleSigner) {
        guard case .object(let metadata) = resourceMetadata else {
            signature = signer.signature(of: .object(unsignedPairs))
            return
        }
        var buffer: [UInt8] = []
        signature = signer.signature(of: self, metadata: SigningSegments(metadata), buffer: &buffer)
    }

    /// Reads a sample back from its JSON dict (as `tail` receives it). Returns nil when a required key is missing
    /// or has the wrong type.
    public init?(json: JSONValue) {
        guard let name = json["counter_name"]?.stringValue,
              let type = json["counter_type"]?.stringValue.flatMap(SampleType.init(rawValue:)),
              let resourceID = json["resource_id"]?.stringValue,
              let timestamp = json["timestamp"]?.stringValue
        else { return nil }
        let volume: Volume
        switch json["counter_volume"] {
        case .int(let i)?: volume = .int(i)
        case .double(let d)?: volume = .double(d)
        default: return nil
        }
        self.init(source: json["source"]?.stringValue ?? "", name: name, type: type,
                  unit: json["counter_unit"]?.stringValue ?? "", volume: volume,
                  userID: json["user_id"]?.stringValue, projectID: json["project_id"]?.stringValue,
                  resourceID: resourceID, timestamp: timestamp,
                  resourceMetadata: json["resource_metadata"] ?? .object([]),
                  messageID: json["message_id"]?.stringValue ?? "",
                  monotonicTime: json["monotonic_time"]?.doubleValue ?? 0,
                  signature: json["message_signature"]?.stringValue ?? "")
    }
}

/// Where samples go: stdout, a file, an AMQP broker.
public protocol Publisher: Sendable {
    /// Hands `samples` over; throws when they could not be delivered.
    func publish(_ samples: [Sample]) async throws
    /// Lets go of connections and files once nothing more will be published.
    func close() async
}

extension Publisher {
    public func close() async {}
}

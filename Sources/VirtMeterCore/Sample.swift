/// Ceilometer's counter types.
package enum SampleType: String, Sendable {
    case gauge, cumulative, delta
}

/// A sample's number: integers stay integers on the wire (`123456789000`), floats are floats (`387.890625`).
package enum Volume: Sendable, Equatable {
    case int(Int64)
    case double(Double)

    /// The volume as a Double, for arithmetic and comparisons.
    package var doubleValue: Double {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        }
    }

    /// A counter read from libvirt, clamped into Int64 (libvirt's counters are unsigned 64-bit).
    package static func counter(_ value: UInt64) -> Volume { .int(Int64(clamping: value)) }

}

/// What a meter measured for one resource, before it is stamped into a wire `Sample`.
package struct Reading: Sendable {
    package var volume: Volume
    /// The device read (its resource id and metadata keys, one object for all its readings); nil: the domain.
    package var device: DeviceResource?
    /// Keys a reading of the domain itself adds to its resource_metadata (`cpu_number`).
    private var domainMetadata: [(String, JSONValue)]

    /// A reading of the domain, adding `metadata` to its resource_metadata.
    package init(_ volume: Volume, metadata: [(String, JSONValue)] = []) {
        self.volume = volume
        domainMetadata = metadata
    }

    /// A reading of a device.
    package init(_ volume: Volume, device: DeviceResource) {
        self.volume = volume
        self.device = device
        domainMetadata = []
    }

    /// The resource's id; nil means the domain's uuid.
    package var resourceID: String? { device?.id }
    /// Keys that this meter adds to the domain's resource_metadata, or replaces in it (`cpu_number`, `disk_name`).
    package var metadata: [(String, JSONValue)] { device?.metadata ?? domainMetadata }
}

/// One sample as a value: every key of ceilometer's sample dict. What tools and tests hold; polling writes samples
/// straight to their bytes (`SampleEncoder`), and this is what reading them back gives.
package struct Sample: Sendable {
    package var source: String
    package var name: String
    package var type: SampleType
    package var unit: String
    package var volume: Volume
    package var userID: String?
    package var userName: String?
    package var projectID: String?
    package var projectName: String?
    package var resourceID: String
    /// UTC, `YYYY-MM-DDTHH:MM:SS.ffffff`.
    package var timestamp: String
    package var resourceMetadata: JSONValue
    /// A time-based (v1) UUID.
    package var messageID: String
    package var monotonicTime: Double
    package var signature: String

    package init(source: String, name: String, type: SampleType, unit: String, volume: Volume, userID: String?,
                userName: String? = nil, projectID: String?, projectName: String? = nil, resourceID: String,
                timestamp: String, resourceMetadata: JSONValue, messageID: String, monotonicTime: Double,
                signature: String = "") {
        self.source = source
        self.name = name
        self.type = type
        self.unit = unit
        self.volume = volume
        self.userID = userID
        self.userName = userName
        self.projectID = projectID
        self.projectName = projectName
        self.resourceID = resourceID
        self.timestamp = timestamp
        self.resourceMetadata = resourceMetadata
        self.messageID = messageID
        self.monotonicTime = monotonicTime
        self.signature = signature
    }

    /// Reads a sample back from its JSON dict (as `tail` receives it). Returns nil when a required key is missing
    /// or has the wrong type.
    package init?(json: JSONValue) {
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
                  userID: json["user_id"]?.stringValue, userName: json["user_name"]?.stringValue,
                  projectID: json["project_id"]?.stringValue, projectName: json["project_name"]?.stringValue,
                  resourceID: resourceID, timestamp: timestamp,
                  resourceMetadata: json["resource_metadata"] ?? .object([]),
                  messageID: json["message_id"]?.stringValue ?? "",
                  monotonicTime: json["monotonic_time"]?.doubleValue ?? 0,
                  signature: json["message_signature"]?.stringValue ?? "")
    }
}

extension RecordWriter {
    /// Appends `sample`, signed by `encoder`. Returns false when it cannot be written (a NaN or infinite number).
    @discardableResult
    package mutating func append(_ sample: Sample, encoder: inout SampleEncoder) -> Bool {
        append { encoder.write(sample, to: &$0) }
    }
}

/// Where samples go: stdout, a file, an AMQP broker.
package protocol Publisher: Sendable {
    /// Hands over `records` (each record's samples make one message); throws when they could not be delivered.
    func publish(_ records: SampleRecords) async throws
    /// Lets go of connections and files once nothing more will be published.
    func close() async
}

extension Publisher {
    package func close() async {}
}

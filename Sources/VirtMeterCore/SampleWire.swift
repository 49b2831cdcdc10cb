/// The wire form of a sample, defined once: the keys of ceilometer's sample dict in the order ceilometer writes
/// them, and how each value is written. The published JSON and the signature (the same values fed in key order
/// sorted by code point, nested keys flattened as `parent:child`, see `SampleSigner`) both derive from this list
/// and from `SampleValues.value(of:)`; nothing else writes a sample.
package enum SampleField: Int, CaseIterable, Sendable {
    case source, counterName, counterType, counterUnit, counterVolume, userID, userName, projectID, projectName,
         resourceID, timestamp, resourceMetadata, messageID, monotonicTime, messageSignature

    /// The key in the sample dict.
    package var key: String {
        switch self {
        case .source: return "source"
        case .counterName: return "counter_name"
        case .counterType: return "counter_type"
        case .counterUnit: return "counter_unit"
        case .counterVolume: return "counter_volume"
        case .userID: return "user_id"
        case .userName: return "user_name"
        case .projectID: return "project_id"
        case .projectName: return "project_name"
        case .resourceID: return "resource_id"
        case .timestamp: return "timestamp"
        case .resourceMetadata: return "resource_metadata"
        case .messageID: return "message_id"
        case .monotonicTime: return "monotonic_time"
        case .messageSignature: return "message_signature"
        }
    }

    /// The order of the published dict (ceilometer's `Sample.as_dict()` plus the signature last).
    static let wireOrder: [SampleField] = allCases
    /// The order the signature visits the keys: sorted by code point, without the signature itself.
    static let signingOrder: [SampleField] = allCases.filter { $0 != .messageSignature }
        .sorted { precedes($0.key, $1.key) }
    /// `"key": ` for each field, as bytes, by raw value.
    static let keyPrefixes: [[UInt8]] = allCases.map { field in
        var bytes: [UInt8] = []
        JSONBytes.string(field.key, to: &bytes)
        bytes += Array(": ".utf8)
        return bytes
    }
    static let signingKeys: [[UInt8]] = allCases.map { Array($0.key.utf8) }

    /// Python's ordering of str keys: by code point.
    static func precedes(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
    }
}

/// A top-level value as it goes on the wire; its JSON text and its Python `str()` both derive from it.
enum WireValue {
    /// JSON: quoted and escaped; `str()`: the text itself.
    case string(String)
    /// JSON `null`; `str()`: `None`.
    case null
    /// A number whose JSON text and `str()` are the same text (integers plain, floats in Python's repr).
    case number(String)
    /// resource_metadata, rendered apart (`RenderedMetadata`).
    case metadata
}

/// One sample's top-level values (all but resource_metadata and the signature), ready to be written.
package struct SampleValues: Sendable {
    package var source: String
    package var name: String
    package var type: SampleType
    package var unit: String
    package var volume: Volume {
        didSet { volumeText = Self.text(volume) }
    }
    package var userID: String?
    package var userName: String?
    package var projectID: String?
    package var projectName: String?
    package var resourceID: String
    package var timestamp: String
    package var messageID: String
    package var monotonicTime: Double {
        didSet { monotonicText = PythonRepr.float(monotonicTime) }
    }
    /// The numbers' text, written once and used by both the JSON and the signature.
    private var volumeText: String
    private var monotonicText: String

    package init(source: String, name: String, type: SampleType, unit: String, volume: Volume, userID: String?,
                userName: String? = nil, projectID: String?, projectName: String? = nil, resourceID: String,
                timestamp: String, messageID: String, monotonicTime: Double) {
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
        self.messageID = messageID
        self.monotonicTime = monotonicTime
        volumeText = Self.text(volume)
        monotonicText = PythonRepr.float(monotonicTime)
    }

    private static func text(_ volume: Volume) -> String {
        switch volume {
        case .int(let value): return String(value)
        case .double(let value): return PythonRepr.float(value)
        }
    }

    /// Whether every number can be written as JSON that decodes to the value signed: a NaN or an infinity cannot
    /// (Python's json writes `NaN`, which is not JSON, and no consumer could verify it), so such a sample is refused.
    var isWritable: Bool {
        if case .double(let value) = volume, !value.isFinite { return false }
        return monotonicTime.isFinite
    }

    func value(of field: SampleField) -> WireValue {
        func optional(_ text: String?) -> WireValue { text.map(WireValue.string) ?? .null }
        switch field {
        case .source: return .string(source)
        case .counterName: return .string(name)
        case .counterType: return .string(type.rawValue)
        case .counterUnit: return .string(unit)
        case .counterVolume: return .number(volumeText)
        case .userID: return optional(userID)
        case .userName: return optional(userName)
        case .projectID: return optional(projectID)
        case .projectName: return optional(projectName)
        case .resourceID: return .string(resourceID)
        case .timestamp: return .string(timestamp)
        case .resourceMetadata: return .metadata
        case .messageID: return .string(messageID)
        case .monotonicTime: return .number(monotonicText)
        case .messageSignature: return .null   // written by the encoder, never signed
        }
    }
}

/// A resource_metadata dict rendered once for all the samples that carry it: per top-level key its JSON text and
/// the bytes it feeds the signature (`resource_metadata:flavor:ram` + `2048`, ...), and the whole dict's of both. A
/// meter's few extra keys (`cpu_number`, `disk_name`) are merged in once per domain and set of keys (`merged`): they
/// replace the same key in place or are appended, as Python's `dict.update` does.
package struct RenderedMetadata: Sendable {
    struct Entry: Sendable {
        let key: String
        /// `"key": value`.
        let json: [UInt8]
        /// The signature's input for every leaf under the key.
        let signing: [UInt8]
    }

    /// In dict order.
    private let entries: [Entry]
    /// The whole dict, `{...}`.
    let json: [UInt8]
    /// The signature's input of the whole dict: the entries' in key order.
    let signing: [UInt8]

    /// An empty dict.
    package static let empty = RenderedMetadata([])

    /// Renders the dict `pairs` (keys in the order given).
    package init(_ pairs: [(String, JSONValue)]) {
        self.init(entries: pairs.map { key, value in
            var json: [UInt8] = []
            JSONBytes.string(key, to: &json)
            json += Array(": ".utf8)
            json += Array(value.jsonText.utf8)
            var signing: [UInt8] = []
            SampleSigner.walk(.object([(key, value)]), prefix: "resource_metadata") { name, text in
                signing += name.utf8
                signing += text.utf8
            }
            return Entry(key: key, json: json, signing: signing)
        })
    }

    /// The dict of `entries`; `keepEntries` false keeps only the rendered dict (it cannot be merged into again), as a
    /// domain keeps one per device for every cycle.
    private init(entries: [Entry], keepEntries: Bool = true) {
        // Sized exactly: a domain keeps these for every cycle, thousands of domains at once.
        var json: [UInt8] = []
        json.reserveCapacity(entries.reduce(2 + 2 * max(0, entries.count - 1)) { $0 + $1.json.count })
        json.append(UInt8(ascii: "{"))
        for (index, entry) in entries.enumerated() {
            if index > 0 { json += Array(", ".utf8) }
            json += entry.json
        }
        json.append(UInt8(ascii: "}"))
        self.entries = keepEntries ? entries : []
        self.json = json
        var signing: [UInt8] = []
        signing.reserveCapacity(entries.reduce(0) { $0 + $1.signing.count })
        for entry in entries.sorted(by: { SampleField.precedes($0.key, $1.key) }) { signing += entry.signing }
        self.signing = signing
    }

    /// This dict updated with `extra`'s keys (rendered only: the result is not merged into again).
    package func merged(with extra: [(String, JSONValue)]) -> RenderedMetadata {
        guard !extra.isEmpty else { return self }
        var merged = entries
        for entry in RenderedMetadata(extra).entries {
            if let index = merged.firstIndex(where: { $0.key == entry.key }) {
                merged[index] = entry
            } else {
                merged.append(entry)
            }
        }
        return RenderedMetadata(entries: merged, keepEntries: false)
    }
}

/// Writes samples as their final JSON bytes, signed: the one place a sample becomes what goes on the bus.
package struct SampleEncoder: Sendable {
    package let signer: SampleSigner
    /// The signature's input, reused from sample to sample.
    private var signingInput: [UInt8] = []

    package init(signer: SampleSigner) {
        self.signer = signer
        signingInput.reserveCapacity(4096)
    }

    /// Appends the sample dict of `values` with resource_metadata `metadata` to `out`, signed. Returns false, writing
    /// nothing, when the sample cannot be written (a NaN or infinite number).
    @discardableResult
    package mutating func write(_ values: SampleValues, metadata: RenderedMetadata, to out: inout [UInt8]) -> Bool {
        guard values.isWritable else { return false }
        let signature = sign(values, metadata: metadata)
        let prefixes = SampleField.keyPrefixes
        out.append(UInt8(ascii: "{"))
        for field in SampleField.wireOrder {
            if field != .source {
                out.append(UInt8(ascii: ","))
                out.append(UInt8(ascii: " "))
            }
            out.append(contentsOf: prefixes[field.rawValue])
            switch field == .messageSignature ? .string(signature) : values.value(of: field) {
            case .string(let text): JSONBytes.string(text, to: &out)
            case .null: out.append(contentsOf: "null".utf8)
            case .number(let text): out.append(contentsOf: text.utf8)
            case .metadata: out.append(contentsOf: metadata.json)
            }
        }
        out.append(UInt8(ascii: "}"))
        return true
    }

    private mutating func sign(_ values: SampleValues, metadata: RenderedMetadata) -> String {
        guard signer.isSigning else { return "" }
        let keys = SampleField.signingKeys
        signingInput.removeAll(keepingCapacity: true)
        for field in SampleField.signingOrder {
            switch values.value(of: field) {
            case .string(let text):
                signingInput.append(contentsOf: keys[field.rawValue])
                signingInput.append(contentsOf: text.utf8)
            case .null:
                signingInput.append(contentsOf: keys[field.rawValue])
                signingInput.append(contentsOf: "None".utf8)
            case .number(let text):
                signingInput.append(contentsOf: keys[field.rawValue])
                signingInput.append(contentsOf: text.utf8)
            case .metadata:
                signingInput.append(contentsOf: metadata.signing)
            }
        }
        return signer.signature(ofInput: signingInput)
    }
}

/// JSON text written as bytes.
enum JSONBytes {
    /// A JSON string: quotes, and escapes for quote, backslash and control characters (UTF-8 passes through, which
    /// decodes to the same string as Python's `\uXXXX` escapes).
    static func string(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { content($0, to: &out) }
        out.append(UInt8(ascii: "\""))
    }

    private static func content(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        // Most strings need no escape: one append.
        guard bytes.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) else {
            out.append(contentsOf: bytes)
            return
        }
        var start = 0
        for (index, byte) in bytes.enumerated() {
            guard byte < 0x20 || byte == 0x22 || byte == 0x5C else { continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
            start = index + 1
            out.append(UInt8(ascii: "\\"))
            switch byte {
            case 0x22, 0x5C: out.append(byte)
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            default:
                let digits: StaticString = "0123456789abcdef"
                out.append(contentsOf: "u00".utf8)
                out.append(digits.utf8Start[Int(byte >> 4)])
                out.append(digits.utf8Start[Int(byte & 0xF)])
            }
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
    }
}

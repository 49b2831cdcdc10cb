/// The wire form of a sample, defined once: the keys of ceilometer's sample dict in the order ceilometer writes
/// them, and how each value is written. The published JSON and the signature (the same values fed in key order
/// sorted by code point, nested keys flattened as `parent:child`, see `SampleSigner`) both derive from this list
/// and from `Sample.value(of:)`; nothing else writes a sample.
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

    /// How widely a field's value is shared, which decides how long its rendering is kept (`RenderedFields`).
    package enum Scope: Sendable {
        /// The same for every sample of a meter (of one `SampleStamper`).
        case meter
        /// The same for every sample about one resource of a domain: owner ids and the resource id.
        case resource
        /// The same for every sample of a domain in a cycle: the timestamp.
        case cycle
        /// resource_metadata, rendered apart (`RenderedMetadata`).
        case metadata
        /// The sample's own: its volume, message id, monotonic time and signature.
        case sample
    }

    /// The scope of this field's value.
    package var scope: Scope {
        switch self {
        case .source, .counterName, .counterType, .counterUnit: return .meter
        case .userID, .userName, .projectID, .projectName, .resourceID: return .resource
        case .timestamp: return .cycle
        case .resourceMetadata: return .metadata
        case .counterVolume, .messageID, .monotonicTime, .messageSignature: return .sample
        }
    }

    /// The order of the published dict (ceilometer's `Sample.as_dict()` plus the signature last).
    static let wireOrder: [SampleField] = allCases
    /// The order the signature visits the keys: sorted by code point, without the signature itself.
    static let signingOrder: [SampleField] = allCases.filter { $0 != .messageSignature }
        .sorted { precedes($0.key, $1.key) }
    /// `"key": ` (JSON) and `key` (the signature's input) of each field, in memory that lives as long as the process:
    /// the encoder copies them for every sample, and an array would be retained and released at each copy.
    /// Immutable once made.
    nonisolated(unsafe) private static let keyTable: UnsafeBufferPointer<UnsafeBufferPointer<UInt8>> = {
        var keys: [UnsafeBufferPointer<UInt8>] = []
        for field in allCases {
            var prefix: [UInt8] = []
            JSONBytes.string(field.key, to: &prefix)
            prefix += Array(": ".utf8)
            keys.append(FixedBytes.make(prefix))
            keys.append(FixedBytes.make(Array(field.key.utf8)))
        }
        let table = UnsafeMutableBufferPointer<UnsafeBufferPointer<UInt8>>.allocate(capacity: keys.count)
        _ = table.initialize(from: keys)
        return UnsafeBufferPointer(table)
    }()

    /// The field's key as JSON writes it (`"key": `) or as the signature reads it (`key`).
    func key(json: Bool) -> UnsafeBufferPointer<UInt8> {
        Self.keyTable[2 * rawValue + (json ? 0 : 1)]
    }

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
}

/// How a sample's shared top-level values are written (scopes meter, resource and cycle); resource_metadata is
/// rendered apart (`RenderedMetadata`), the sample's own values and the signature by the encoder.
extension Sample {
    /// The value of a shared field; nil for resource_metadata and the sample's own fields.
    func value(of field: SampleField) -> WireValue? {
        func optional(_ text: String?) -> WireValue { text.map(WireValue.string) ?? .null }
        switch field {
        case .source: return .string(source)
        case .counterName: return .string(name)
        case .counterType: return .string(type.rawValue)
        case .counterUnit: return .string(unit)
        case .userID: return optional(userID)
        case .userName: return optional(userName)
        case .projectID: return optional(projectID)
        case .projectName: return optional(projectName)
        case .resourceID: return .string(resourceID)
        case .timestamp: return .string(timestamp)
        case .resourceMetadata, .counterVolume, .messageID, .monotonicTime, .messageSignature: return nil
        }
    }
}

/// A resource_metadata dict rendered once for all the samples that carry it: per top-level key its JSON text and
/// the bytes it feeds the signature (`resource_metadata:flavor:ram` + `2048`, ...), and the whole dict's of both. A
/// meter's few extra keys (`cpu_number`, `disk_name`) are merged in once per domain and set of keys (`merged`): they
/// replace the same key in place or are appended, as Python's `dict.update` does. A class: every sample holds it.
package final class RenderedMetadata: @unchecked Sendable {   // immutable: its buffers are written only in init
    struct Entry: Sendable {
        let key: String
        /// `"key": value`.
        let json: [UInt8]
        /// The signature's input for every leaf under the key.
        let signing: [UInt8]
    }

    /// In dict order.
    private let entries: [Entry]
    /// The whole dict, `{...}` (freed with this object).
    let json: UnsafeBufferPointer<UInt8>
    /// The signature's input of the whole dict: the entries' in key order (freed with this object).
    let signing: UnsafeBufferPointer<UInt8>

    /// An empty dict.
    package static let empty = RenderedMetadata([])

    /// Renders the dict `pairs` (keys in the order given).
    package convenience init(_ pairs: [(String, JSONValue)]) {
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
        self.json = FixedBytes.make(json)
        var signing: [UInt8] = []
        signing.reserveCapacity(entries.reduce(0) { $0 + $1.signing.count })
        for entry in entries.sorted(by: { SampleField.precedes($0.key, $1.key) }) { signing += entry.signing }
        self.signing = FixedBytes.make(signing)
    }

    deinit {
        json.deallocate()
        signing.deallocate()
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

/// Some of a sample's fields, rendered once for all the samples that share them (a meter's, a resource's, a
/// domain's in one cycle): per field its JSON text (`"key": value`) and its share of the signature's input (the key,
/// then Python's `str()` of the value).
package final class RenderedFields: @unchecked Sendable {   // immutable: its buffers are written only in init
    /// Per field in raw-value order, its JSON text then its signature input, back to back (nothing for the fields of
    /// other scopes). Freed with this object.
    private let bytes: UnsafeBufferPointer<UInt8>
    /// Where each piece starts in `bytes`: field `f`'s JSON text is `marks[2f]..<marks[2f+1]`, its signature input
    /// `marks[2f+1]..<marks[2f+2]`. (A domain keeps one of these per disk and interface: kept small.)
    private let marks: UnsafeBufferPointer<UInt32>

    /// The fields of `scope`, with the values of `sample`.
    package init(_ sample: Sample, scope: SampleField.Scope) {
        var bytes: [UInt8] = [], marks: [UInt32] = [0]
        for field in SampleField.allCases {
            let value = field.scope == scope ? sample.value(of: field) : nil
            if let value { SampleEncoder.appendJSON(field, value, to: &bytes) }
            marks.append(UInt32(bytes.count))
            if let value { SampleEncoder.appendSigning(field, value, to: &bytes) }
            marks.append(UInt32(bytes.count))
        }
        self.bytes = FixedBytes.make(bytes)
        self.marks = FixedBytes.make(marks)
    }

    deinit {
        bytes.deallocate()
        marks.deallocate()
    }

    func appendJSON(_ field: SampleField, to out: inout [UInt8]) {
        append(from: 2 * field.rawValue, to: &out)
    }

    func appendSigning(_ field: SampleField, to out: inout [UInt8]) {
        append(from: 2 * field.rawValue + 1, to: &out)
    }

    private func append(from mark: Int, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[Int(marks[mark])..<Int(marks[mark + 1])]))
    }
}

/// Writes samples as their final JSON bytes, signed: the one place a sample becomes what goes on the bus. A sample
/// is written from the renderings of its shared fields (`RenderedFields`, `RenderedMetadata`) and its own values,
/// in the wire order and, for the signature, the signing order of `SampleField`.
package struct SampleEncoder: Sendable {
    package let signer: SampleSigner
    /// The rendered fields of each meter seen so far, by name (with the type and unit they were rendered with).
    private var meters: [String: (type: SampleType, unit: String, fields: RenderedFields)] = [:]
    /// The samples prepared and not yet written, at most two (signed together), reused from sample to sample.
    private var first = Prepared(), second = Prepared()

    /// A sample between `prepare` and `writePrepared`: its own values, its signature's input and its signature.
    private struct Prepared {
        var own = OwnValues()
        var signingInput: [UInt8] = []
        var signature: [UInt8] = []

        init() {
            own.bytes.reserveCapacity(128)
            signingInput.reserveCapacity(4096)
            signature.reserveCapacity(64)
        }
    }

    package init(signer: SampleSigner) {
        self.signer = signer
    }

    /// Appends `sample`, signed, to `out` (its resource_metadata rendered on the way). Returns false, writing
    /// nothing, when it has a NaN or infinite number.
    @discardableResult
    package mutating func write(_ sample: Sample, to out: inout [UInt8]) -> Bool {
        var metadata = RenderedMetadata.empty
        if case .object(let pairs) = sample.resourceMetadata { metadata = RenderedMetadata(pairs) }
        let shared = Shared(meter: RenderedFields(sample, scope: .meter),
                            resource: RenderedFields(sample, scope: .resource),
                            cycle: RenderedFields(sample, scope: .cycle), metadata: metadata)
        return write(volume: sample.volume, messageID: { $0.append(contentsOf: sample.messageID.utf8) },
                     monotonicTime: sample.monotonicTime, shared: shared, to: &out)
    }

    /// The renderings a sample shares with others.
    package struct Shared {
        let meter: RenderedFields, resource: RenderedFields, cycle: RenderedFields
        let metadata: RenderedMetadata

        package init(meter: RenderedFields, resource: RenderedFields, cycle: RenderedFields,
                     metadata: RenderedMetadata) {
            self.meter = meter
            self.resource = resource
            self.cycle = cycle
            self.metadata = metadata
        }
    }

    /// The meter fields of `sample`'s meter, rendered the first time the meter is seen (or its type or unit changed).
    package mutating func meterFields(_ sample: Sample) -> RenderedFields {
        if let known = knownMeterFields(sample.name, type: sample.type, unit: sample.unit) { return known }
        let fields = RenderedFields(sample, scope: .meter)
        meters[sample.name] = (sample.type, sample.unit, fields)
        return fields
    }

    /// The meter fields of `name` if they were rendered with `type` and `unit`.
    package func knownMeterFields(_ name: String, type: SampleType, unit: String) -> RenderedFields? {
        guard let known = meters[name], known.type == type, known.unit == unit else { return nil }
        return known.fields
    }

    /// Appends a sample to `out`, signed: its own values (`messageID` appends the message id's bytes), and the
    /// renderings it shares. Returns false, writing nothing, when a number cannot be written (NaN or infinite:
    /// Python's json writes `NaN`, which is not JSON, and no consumer could verify it).
    @discardableResult
    package mutating func write(volume: Volume, messageID: (inout [UInt8]) -> Void, monotonicTime: Double,
                                shared: borrowing Shared, to out: inout [UInt8]) -> Bool {
        guard prepare(0, volume: volume, messageID: messageID, monotonicTime: monotonicTime, shared: shared) else {
            return false
        }
        signPrepared(1)
        writePrepared(0, shared: shared, to: &out)
        return true
    }

    /// Prepares a sample in `slot` (0 or 1), as `write` would write it: renders its own values and its signature's
    /// input. Returns false when a number cannot be written (see `write`). Then `signPrepared` and `writePrepared`.
    package mutating func prepare(_ slot: Int, volume: Volume, messageID: (inout [UInt8]) -> Void,
                                  monotonicTime: Double, shared: borrowing Shared) -> Bool {
        if case .double(let value) = volume, !value.isFinite { return false }
        guard monotonicTime.isFinite else { return false }
        if slot == 0 {
            Self.prepare(&first, volume, messageID, monotonicTime, shared, signing: signer.isSigning)
        } else {
            Self.prepare(&second, volume, messageID, monotonicTime, shared, signing: signer.isSigning)
        }
        return true
    }

    private static func prepare(_ sample: inout Prepared, _ volume: Volume, _ messageID: (inout [UInt8]) -> Void,
                                _ monotonicTime: Double, _ shared: borrowing Shared, signing: Bool) {
        sample.own.bytes.removeAll(keepingCapacity: true)
        switch volume {
        case .int(let value): sample.own.bytes.append(contentsOf: String(value).utf8)
        case .double(let value): sample.own.bytes.append(contentsOf: PythonRepr.float(value).utf8)
        }
        sample.own.volumeEnd = sample.own.bytes.count
        messageID(&sample.own.bytes)
        sample.own.messageIDEnd = sample.own.bytes.count
        sample.own.bytes.append(contentsOf: PythonRepr.float(monotonicTime).utf8)
        sample.signingInput.removeAll(keepingCapacity: true)
        guard signing else { return }
        for field in SampleField.signingOrder {
            append(field, json: false, shared, sample.own, to: &sample.signingInput)
        }
    }

    /// Signs the samples prepared in the first `count` slots (1 or 2): two are signed together, which costs about
    /// what one does (`SampleSigner.appendSignatures`).
    package mutating func signPrepared(_ count: Int) {
        first.signature.removeAll(keepingCapacity: true)
        second.signature.removeAll(keepingCapacity: true)
        if count == 2 {
            signer.appendSignatures(ofInputs: first.signingInput, second.signingInput, to: &first.signature,
                                    &second.signature)
        } else {
            signer.appendSignature(ofInput: first.signingInput, to: &first.signature)
        }
    }

    /// Appends the sample prepared and signed in `slot`, with the renderings it was prepared with, to `out`.
    package func writePrepared(_ slot: Int, shared: borrowing Shared, to out: inout [UInt8]) {
        let sample = slot == 0 ? first : second
        out.append(UInt8(ascii: "{"))
        for field in SampleField.wireOrder {
            if field != .source {
                out.append(UInt8(ascii: ","))
                out.append(UInt8(ascii: " "))
            }
            guard field == .messageSignature else {
                Self.append(field, json: true, shared, sample.own, to: &out)
                continue
            }
            out.append(contentsOf: field.key(json: true))
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: sample.signature)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
    }

    /// Appends `field` in its JSON form (`"key": value`) or its signing form (`key` + `str(value)`).
    private static func append(_ field: SampleField, json: Bool, _ shared: borrowing Shared, _ own: borrowing OwnValues,
                               to out: inout [UInt8]) {
        let fields: RenderedFields
        switch field.scope {
        case .meter: fields = shared.meter
        case .resource: fields = shared.resource
        case .cycle: fields = shared.cycle
        case .metadata:
            if json { out.append(contentsOf: field.key(json: true)) }
            out.append(contentsOf: json ? shared.metadata.json : shared.metadata.signing)
            return
        case .sample:
            own.append(field, json: json, to: &out)
            return
        }
        json ? fields.appendJSON(field, to: &out) : fields.appendSigning(field, to: &out)
    }

    /// Appends `"key": ` and the JSON text of a shared value.
    static func appendJSON(_ field: SampleField, _ value: WireValue, to out: inout [UInt8]) {
        out.append(contentsOf: field.key(json: true))
        switch value {
        case .string(let text): JSONBytes.string(text, to: &out)
        case .null: out.append(contentsOf: "null".utf8)
        }
    }

    /// Appends the key and Python's `str()` of a shared value, as the signature reads them.
    static func appendSigning(_ field: SampleField, _ value: WireValue, to out: inout [UInt8]) {
        out.append(contentsOf: field.key(json: false))
        switch value {
        case .string(let text): out.append(contentsOf: text.utf8)
        case .null: out.append(contentsOf: "None".utf8)
        }
    }
}

/// The shared renderings' storage: bytes copied out of an array into memory of their own, which their owner frees.
/// The encoder reads them for every sample; reading an array's would retain and release it each time.
enum FixedBytes {
    static func make<Element>(_ elements: [Element]) -> UnsafeBufferPointer<Element> {
        let copy = UnsafeMutableBufferPointer<Element>.allocate(capacity: elements.count)
        _ = copy.initialize(from: elements)
        return UnsafeBufferPointer(copy)
    }
}

/// A sample's own values as the bytes both its forms write, one after the other: the volume and the monotonic time
/// (the same text in JSON and in Python's `str()`), and the message id between them.
private struct OwnValues {
    var bytes: [UInt8] = []
    var volumeEnd = 0, messageIDEnd = 0

    /// Appends `field` in its JSON form (the message id quoted and escaped) or its signing form. The signature is
    /// written by the encoder, never signed.
    func append(_ field: SampleField, json: Bool, to out: inout [UInt8]) {
        let range: Range<Int>
        switch field {
        case .counterVolume: range = 0..<volumeEnd
        case .messageID: range = volumeEnd..<messageIDEnd
        case .monotonicTime: range = messageIDEnd..<bytes.count
        default: return
        }
        out.append(contentsOf: field.key(json: json))
        bytes.withUnsafeBufferPointer { bytes in
            let value = UnsafeBufferPointer(rebasing: bytes[range])
            guard json, field == .messageID else { return out.append(contentsOf: value) }
            out.append(UInt8(ascii: "\""))
            JSONBytes.content(value, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }
}

enum JSONBytes {
    /// A JSON string: quotes, and escapes for quote, backslash and control characters (UTF-8 passes through, which
    /// decodes to the same string as Python's `\uXXXX` escapes).
    static func string(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { content($0, to: &out) }
        out.append(UInt8(ascii: "\""))
    }

    static func content(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
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

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
        /// The same for every sample of a domain in a cycle: the timestamp, and the monotonic time the domain was read
        /// at (ceilometer's `polled_time`: one per instance inspected).
        case cycle
        /// resource_metadata, rendered apart (`RenderedMetadata`).
        case metadata
        /// The sample's own: its volume, message id and signature.
        case sample
    }

    /// The scope of this field's value.
    package var scope: Scope {
        switch self {
        case .source, .counterName, .counterType, .counterUnit: return .meter
        case .userID, .userName, .projectID, .projectName, .resourceID: return .resource
        case .timestamp, .monotonicTime: return .cycle
        case .resourceMetadata: return .metadata
        case .counterVolume, .messageID, .messageSignature: return .sample
        }
    }

    /// The order of the published dict (ceilometer's `Sample.as_dict()` plus the signature last).
    static let wireOrder: [SampleField] = allCases
    /// The order the signature visits the keys: sorted by code point, without the signature itself.
    static let signingOrder: [SampleField] = allCases.filter { $0 != .messageSignature }
        .sorted { precedes($0.key, $1.key) }

    /// Fields next to each other in one order and of one scope, written as one piece (`RenderedFields` keeps each
    /// scope's fields in both orders, so such a run lies in one stretch of its bytes).
    struct Stretch {
        let scope: Scope, first: SampleField, last: SampleField
    }

    /// The wire order and the signing order as stretches: 8 pieces each rather than 15 and 14.
    nonisolated(unsafe) static let jsonStretches = stretches(wireOrder)
    nonisolated(unsafe) static let signingStretches = stretches(signingOrder)

    private static func stretches(_ order: [SampleField]) -> UnsafeBufferPointer<Stretch> {
        var stretches: [Stretch] = []
        for field in order {
            if let last = stretches.last, last.scope == field.scope {
                stretches[stretches.count - 1] = Stretch(scope: last.scope, first: last.first, last: field)
            } else {
                stretches.append(Stretch(scope: field.scope, first: field, last: field))
            }
        }
        return FixedBytes.make(stretches)
    }

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

    /// The bytes of every key, both forms.
    static let keyBytes = keyTable.reduce(0) { $0 + $1.count }

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
    /// A number's text, the same in JSON and in `str()`.
    case number(String)
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
        case .monotonicTime: return .number(PythonRepr.float(monotonicTime))
        case .resourceMetadata, .counterVolume, .messageID, .messageSignature: return nil
        }
    }
}

/// A resource_metadata dict rendered once for all the samples that carry it: its JSON text
/// (`"resource_metadata": {...}`) and the bytes it feeds the signature (`resource_metadata:flavor:ram` + `2048`, ...,
/// every leaf in key order), each as a few pieces of bytes. A meter's few extra keys (`cpu_number`, `disk_name`)
/// are merged in once per domain and set of keys (`merged`): they replace the same key in place or are appended, as
/// Python's `dict.update` does. A merged dict renders only its extra keys; its pieces point into the dict it was
/// merged into for the rest, so a domain's devices cost a few dozen bytes each rather than a copy of the whole dict.
/// A class: every sample holds it.
package final class RenderedMetadata: @unchecked Sendable {   // immutable: its buffers are written only in init
    /// A top-level key and where its two forms lie in `bytes`: `"key": value` and the signature's input for every
    /// leaf under the key.
    private struct Entry {
        let key: String
        let json: Range<Int>
        let signing: Range<Int>
    }

    /// The pieces of the JSON text, in order (freed with this object; they point into `bytes` and `base.bytes`).
    let jsonPieces: UnsafeBufferPointer<UnsafeBufferPointer<UInt8>>
    /// The pieces of the signature's input, in order (likewise).
    let signingPieces: UnsafeBufferPointer<UnsafeBufferPointer<UInt8>>
    /// The bytes of every piece, both forms.
    let byteCount: Int
    /// This dict's own bytes (freed with this object).
    private let bytes: UnsafeBufferPointer<UInt8>
    /// In dict order, with their places in `bytes` (a merged dict keeps none: it is not merged into again).
    private let entries: [Entry]
    /// The dict a merged one was merged into: its bytes are some of this one's pieces.
    private let base: RenderedMetadata?

    /// An empty dict.
    package static let empty = RenderedMetadata([])

    /// Renders the dict `pairs` (keys in the order given; a later duplicate replaces an earlier key, in its place).
    package init(_ pairs: [(String, JSONValue)]) {
        let rendered = Self.render(Self.unique(pairs))
        // Laid out as `"resource_metadata": {` entry `, ` entry ... `}`, then the entries' signing bytes in key order.
        var bytes = Array(SampleField.resourceMetadata.key(json: true))
        bytes.append(UInt8(ascii: "{"))
        var entries: [Entry] = []
        for (index, entry) in rendered.enumerated() {
            if index > 0 { bytes += Array(", ".utf8) }
            let start = bytes.count
            bytes += entry.json
            entries.append(Entry(key: entry.key, json: start..<bytes.count, signing: 0..<0))
        }
        bytes.append(UInt8(ascii: "}"))
        let jsonEnd = bytes.count
        for index in entries.indices.sorted(by: { SampleField.precedes(entries[$0].key, entries[$1].key) }) {
            let start = bytes.count
            bytes += rendered[index].signing
            entries[index] = Entry(key: entries[index].key, json: entries[index].json, signing: start..<bytes.count)
        }
        let own = FixedBytes.make(bytes)
        self.bytes = own
        self.entries = entries
        base = nil
        jsonPieces = FixedBytes.make([UnsafeBufferPointer(rebasing: own[..<jsonEnd])])
        signingPieces = FixedBytes.make([UnsafeBufferPointer(rebasing: own[jsonEnd...])])
        byteCount = own.count
    }

    /// A dict merged from `base` and `extra` (`merged(with:)`).
    private init(base: RenderedMetadata, extra: [(key: String, json: [UInt8], signing: [UInt8])]) {
        // The extra entries' bytes: for each, `, "key": value` (the separator is used when it is appended), then its
        // signing bytes.
        var bytes: [UInt8] = []
        var extraJSON: [String: Range<Int>] = [:], extraSigning: [String: Range<Int>] = [:]
        for entry in extra {
            let start = bytes.count
            bytes += Array(", ".utf8) + entry.json
            extraJSON[entry.key] = start..<bytes.count
            let signingStart = bytes.count
            bytes += entry.signing
            extraSigning[entry.key] = signingStart..<bytes.count
        }
        let own = FixedBytes.make(bytes)
        let baseBytes = base.bytes
        func ownPiece(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: own[range]) }
        func basePiece(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> {
            UnsafeBufferPointer(rebasing: baseBytes[range])
        }
        // JSON: the base's text with each replaced entry's value swapped, then the new keys before the closing brace.
        var json: [UnsafeBufferPointer<UInt8>] = []
        var from = 0
        for entry in base.entries {
            guard let replacement = extraJSON[entry.key] else { continue }
            json.append(basePiece(from..<entry.json.lowerBound))
            json.append(ownPiece(replacement.lowerBound + 2..<replacement.upperBound))   // without its `, `
            from = entry.json.upperBound
        }
        let closing = (base.jsonPieces[0].count) - 1
        json.append(basePiece(from..<closing))
        let baseKeys = Set(base.entries.map(\.key))
        var separated = !base.entries.isEmpty
        for entry in extra where !baseKeys.contains(entry.key) {
            let range = extraJSON[entry.key]!
            json.append(ownPiece(separated ? range : range.lowerBound + 2..<range.upperBound))
            separated = true
        }
        json.append(basePiece(closing..<closing + 1))
        // The signature's input: the base's entries in key order, the replaced ones left out, the extra ones in
        // their places.
        var signing: [UnsafeBufferPointer<UInt8>] = []
        var extras = extra.map(\.key).sorted(by: SampleField.precedes)[...]
        for entry in base.entries.sorted(by: { SampleField.precedes($0.key, $1.key) }) {
            while let next = extras.first, SampleField.precedes(next, entry.key) {
                signing.append(ownPiece(extraSigning[next]!))
                extras.removeFirst()
            }
            if extraSigning[entry.key] == nil { signing.append(basePiece(entry.signing)) }
        }
        for key in extras { signing.append(ownPiece(extraSigning[key]!)) }
        self.bytes = own
        self.base = base
        entries = []
        // Pieces that follow one another in memory are joined, and empty ones dropped: fewer copies per sample.
        jsonPieces = FixedBytes.make(Self.joined(json))
        signingPieces = FixedBytes.make(Self.joined(signing))
        byteCount = json.reduce(0) { $0 + $1.count } + signing.reduce(0) { $0 + $1.count }
    }

    deinit {
        bytes.deallocate()
        jsonPieces.deallocate()
        signingPieces.deallocate()
    }

    /// This dict updated with `extra`'s keys (it cannot be merged into again).
    package func merged(with extra: [(String, JSONValue)]) -> RenderedMetadata {
        guard !extra.isEmpty else { return self }
        precondition(base == nil, "RenderedMetadata: a merged dict is not merged into again")
        return RenderedMetadata(base: self, extra: Self.render(Self.unique(extra)))
    }

    /// `pairs` with each key once, in the place of its first occurrence, with its last value (a Python dict's).
    private static func unique(_ pairs: [(String, JSONValue)]) -> [(String, JSONValue)] {
        var unique: [(String, JSONValue)] = []
        for (key, value) in pairs {
            if let index = unique.firstIndex(where: { $0.0 == key }) {
                unique[index].1 = value
            } else {
                unique.append((key, value))
            }
        }
        return unique
    }

    /// Each pair's JSON text (`"key": value`) and signing bytes.
    private static func render(_ pairs: [(String, JSONValue)]) -> [(key: String, json: [UInt8], signing: [UInt8])] {
        pairs.map { key, value in
            var json: [UInt8] = []
            JSONBytes.string(key, to: &json)
            json += Array(": ".utf8)
            json += Array(value.jsonText.utf8)
            var signing: [UInt8] = []
            SampleSigner.walk(.object([(key, value)]), prefix: "resource_metadata") { name, text in
                signing += name.utf8
                signing += text.utf8
            }
            return (key, json, signing)
        }
    }

    /// `pieces` without the empty ones, each run of pieces that follow one another in memory joined into one.
    private static func joined(_ pieces: [UnsafeBufferPointer<UInt8>]) -> [UnsafeBufferPointer<UInt8>] {
        var joined: [UnsafeBufferPointer<UInt8>] = []
        for piece in pieces where piece.count > 0 {
            if let last = joined.last, last.baseAddress! + last.count == piece.baseAddress! {
                joined[joined.count - 1] = UnsafeBufferPointer(start: last.baseAddress, count: last.count + piece.count)
            } else {
                joined.append(piece)
            }
        }
        return joined
    }

    /// The JSON text and the signing bytes, each in one piece (for tests and tools).
    var jsonText: [UInt8] { jsonPieces.flatMap { Array($0) } }
    var signingText: [UInt8] { signingPieces.flatMap { Array($0) } }
}

/// Some of a sample's fields, rendered once for all the samples that share them (a meter's, a resource's, a
/// domain's in one cycle): per field its JSON text (`, "key": value`, without the comma for the first key) and its
/// share of the signature's input (the key, then Python's `str()` of the value).
package final class RenderedFields: @unchecked Sendable {   // immutable: its buffers are written only in init
    /// The JSON texts of the scope's fields in the wire order, then their signature inputs in the signing order,
    /// back to back, so that fields next to each other in an order are one stretch of bytes. Freed with this object.
    private let bytes: UnsafeBufferPointer<UInt8>
    /// Where each field's pieces lie in `bytes`: its JSON text `marks[4f]..<marks[4f+1]`, its signature input
    /// `marks[4f+2]..<marks[4f+3]` (empty for the fields of other scopes). (A domain keeps one of these per disk and
    /// interface: kept small.)
    private let marks: UnsafeBufferPointer<UInt32>

    /// The fields of `scope`, with the values of `sample`.
    package init(_ sample: Sample, scope: SampleField.Scope) {
        var bytes: [UInt8] = [], marks = [UInt32](repeating: 0, count: 4 * SampleField.allCases.count)
        bytes.reserveCapacity(256)
        for (order, json) in [(SampleField.wireOrder, true), (SampleField.signingOrder, false)] {
            for field in order {
                let mark = 4 * field.rawValue + (json ? 0 : 2)
                marks[mark] = UInt32(bytes.count)
                if field.scope == scope, let value = sample.value(of: field) {
                    if json {
                        if field != SampleField.wireOrder[0] { bytes.append(contentsOf: ", ".utf8) }
                        SampleEncoder.appendJSON(field, value, to: &bytes)
                    } else {
                        SampleEncoder.appendSigning(field, value, to: &bytes)
                    }
                }
                marks[mark + 1] = UInt32(bytes.count)
            }
        }
        self.bytes = FixedBytes.make(bytes)
        self.marks = FixedBytes.make(marks)
    }

    deinit {
        bytes.deallocate()
        marks.deallocate()
    }

    /// The JSON texts or the signature inputs of the fields of `stretch` (of this scope), in one piece.
    func piece(_ stretch: SampleField.Stretch, json: Bool) -> UnsafeBufferPointer<UInt8> {
        let first = 4 * stretch.first.rawValue + (json ? 0 : 2), last = 4 * stretch.last.rawValue + (json ? 1 : 3)
        return UnsafeBufferPointer(rebasing: bytes[Int(marks[first])..<Int(marks[last])])
    }

    /// The bytes of every piece, both forms.
    var byteCount: Int { bytes.count }
}

/// Writes samples as their final JSON bytes, signed: the one place a sample becomes what goes on the bus. A sample
/// is written from the renderings of its shared fields (`RenderedFields`, `RenderedMetadata`) and its own values,
/// in the wire order and, for the signature, the signing order of `SampleField`.
package struct SampleEncoder: Sendable {
    package let signer: SampleSigner
    /// The rendered fields of each meter seen so far, by name, type and unit; never removed, as a prepared sample
    /// (`Shared`) may still point at them.
    private var meters: [MeterKey: RenderedFields] = [:]
    /// What was last found for the meter at each place of a meter list (`knownMeterFields(_:type:unit:position:)`):
    /// its fields, or none while `meters` held `rendered` meters (a meter without readings is looked for again only
    /// once another meter was rendered).
    private var lastFound: [(name: String, type: SampleType, unit: String, fields: RenderedFields?, rendered: Int)?]
        = []
    /// The samples prepared and not yet written, at most `batchSize` (signed together), reused from sample to sample.
    private var slots = [Prepared](repeating: Prepared(), count: SampleEncoder.batchSize)
    /// The most samples prepared at once: those signed together.
    package static let batchSize = SampleSigner.batchSize

    /// A sample between `prepare` and `writePrepared`: its own values, what it shares, its signature's input and
    /// (once `signPrepared` ran) its signature. Its JSON text is written once, straight to where it goes.
    private struct Prepared {
        var own = OwnValues()
        var shared: Shared?
        var signingInput = ScratchBytes()
        var signature = ScratchBytes()
    }

    package init(signer: SampleSigner) {
        self.signer = signer
    }

    /// Appends `sample`, signed, to `out` (its resource_metadata rendered on the way). Returns false, writing
    /// nothing, when it has a NaN or infinite number.
    @discardableResult
    package mutating func write(_ sample: Sample, to out: inout [UInt8]) -> Bool {
        guard sample.monotonicTime.isFinite else { return false }
        var metadata = RenderedMetadata.empty
        if case .object(let pairs) = sample.resourceMetadata { metadata = RenderedMetadata(pairs) }
        let renderings = (meter: RenderedFields(sample, scope: .meter),
                          resource: RenderedFields(sample, scope: .resource),
                          cycle: RenderedFields(sample, scope: .cycle), metadata: metadata)
        return withExtendedLifetime(renderings) {
            let shared = Shared(meter: .passUnretained(renderings.meter),
                                resource: .passUnretained(renderings.resource),
                                cycle: .passUnretained(renderings.cycle),
                                metadata: .passUnretained(renderings.metadata))
            return Array(sample.messageID.utf8).withUnsafeBufferPointer {
                write(volume: sample.volume, messageID: $0, shared: shared, to: &out)
            }
        }
    }

    /// What a meter's rendered fields are kept by.
    private struct MeterKey: Hashable {
        let name: String, type: SampleType, unit: String
    }

    /// The renderings a sample shares with others. It does not keep them alive (it is made for every sample, and
    /// holding them would retain and release four objects each time): whoever makes it keeps them until the sample
    /// is written (`writePrepared`).
    package struct Shared {
        let meter: Unmanaged<RenderedFields>
        let resource: Unmanaged<RenderedFields>
        let cycle: Unmanaged<RenderedFields>
        let metadata: Unmanaged<RenderedMetadata>
        /// Bytes enough for a sample's JSON text or signature input, but for its own values.
        let bound: Int

        package init(meter: Unmanaged<RenderedFields>, resource: Unmanaged<RenderedFields>,
                     cycle: Unmanaged<RenderedFields>, metadata: Unmanaged<RenderedMetadata>) {
            self.meter = meter
            self.resource = resource
            self.cycle = cycle
            self.metadata = metadata
            bound = meter._withUnsafeGuaranteedRef(\.byteCount) + resource._withUnsafeGuaranteedRef(\.byteCount)
                + cycle._withUnsafeGuaranteedRef(\.byteCount) + metadata._withUnsafeGuaranteedRef(\.byteCount)
                + SampleField.keyBytes + 2 * SampleField.allCases.count + 2
        }
    }

    /// The meter fields of `sample`'s meter, rendered the first time the meter is seen (or its type or unit changed).
    package mutating func meterFields(_ sample: Sample) -> RenderedFields {
        if let known = knownMeterFields(sample.name, type: sample.type, unit: sample.unit) { return known }
        let fields = RenderedFields(sample, scope: .meter)
        meters[MeterKey(name: sample.name, type: sample.type, unit: sample.unit)] = fields
        return fields
    }

    /// The meter fields of `name` if they were rendered with `type` and `unit`.
    package func knownMeterFields(_ name: String, type: SampleType, unit: String) -> RenderedFields? {
        meters[MeterKey(name: name, type: type, unit: unit)]
    }

    /// The same, for the meter at `position` in a list of meters: the stamper goes through the same list for every
    /// domain, so the meter found last at that place is compared first (a string compared with itself costs less
    /// than hashing it, which is done for each meter of each domain otherwise).
    package mutating func knownMeterFields(_ name: String, type: SampleType, unit: String, position: Int)
        -> RenderedFields? {
        if position < lastFound.count, let last = lastFound[position], last.name == name, last.type == type,
           last.unit == unit, last.fields != nil || last.rendered == meters.count {
            return last.fields
        }
        let fields = knownMeterFields(name, type: type, unit: unit)
        if lastFound.count <= position { lastFound += repeatElement(nil, count: position + 1 - lastFound.count) }
        lastFound[position] = (name, type, unit, fields, meters.count)
        return fields
    }

    /// Appends a sample to `out`, signed: its own values (the message id's bytes unescaped), and the renderings it
    /// shares. Returns false, writing nothing, when its volume cannot be written (NaN or infinite: Python's json
    /// writes `NaN`, which is not JSON, and no consumer could verify it).
    @discardableResult
    package mutating func write(volume: Volume, messageID: UnsafeBufferPointer<UInt8>, shared: Shared,
                                to out: inout [UInt8]) -> Bool {
        guard prepare(0, volume: volume, messageID: messageID, shared: shared) else { return false }
        signPrepared(1)
        writePrepared(0, to: &out)
        return true
    }

    /// Prepares a sample in `slot` (below `batchSize`), as `write` would write it: its own values and its signature's
    /// input. Returns false when its volume cannot be written (see `write`). Then `signPrepared` and `writePrepared`.
    package mutating func prepare(_ slot: Int, volume: Volume, messageID: UnsafeBufferPointer<UInt8>,
                                  shared: Shared) -> Bool {
        if case .double(let value) = volume, !value.isFinite { return false }
        Self.prepare(&slots[slot], volume, messageID, shared, signing: signer.isSigning)
        return true
    }

    private static func prepare(_ sample: inout Prepared, _ volume: Volume, _ messageID: UnsafeBufferPointer<UInt8>,
                                _ shared: Shared, signing: Bool) {
        sample.own.set(volume, messageID: messageID)
        if signing {
            let bound = shared.bound + sample.own.count
            sample.own.withPieces { own in
                sample.signingInput.write(bound: bound) { out in
                    for stretch in SampleField.signingStretches { add(stretch, json: false, shared, own, to: &out) }
                }
            }
        } else {
            sample.signingInput.write(bound: 0) { _ in }   // unsigned: no input left from an earlier sample
        }
        sample.shared = shared
    }

    /// Adds the fields of `stretch` in their JSON form (`, "key": value`; for the signature, its key and the opening
    /// quote of its value) or their signing form (`key` + `str(value)` each).
    private static func add(_ stretch: SampleField.Stretch, json: Bool, _ shared: Shared, _ own: OwnValues.Pieces,
                            to out: inout ByteCursor) {
        switch stretch.scope {
        case .meter: out.add(shared.meter._withUnsafeGuaranteedRef { $0.piece(stretch, json: json) })
        case .resource: out.add(shared.resource._withUnsafeGuaranteedRef { $0.piece(stretch, json: json) })
        case .cycle: out.add(shared.cycle._withUnsafeGuaranteedRef { $0.piece(stretch, json: json) })
        case .metadata:
            if json {
                out.add(UInt8(ascii: ","))
                out.add(UInt8(ascii: " "))
            }
            shared.metadata._withUnsafeGuaranteedRef { metadata in
                for piece in json ? metadata.jsonPieces : metadata.signingPieces { out.add(piece) }
            }
        case .sample: out.add(own.piece(stretch, json: json))
        }
    }

    /// Signs the samples prepared in the first `count` slots, together: 16 side by side cost about what 10 cost two
    /// at a time (`SampleSigner.writeSignatures`).
    package mutating func signPrepared(_ count: Int) {
        let signer = signer
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count * SampleSigner.hexLength) { hex in
            slots.withUnsafeMutableBufferPointer { slots in
                var inputs: [UnsafeBufferPointer<UInt8>] = []
                inputs.reserveCapacity(count)
                let length = Self.withInputs(of: slots, count, &inputs) {
                    signer.writeSignatures(of: $0, to: hex.baseAddress!)
                }
                for slot in 0..<count {
                    let signature = UnsafeBufferPointer(rebasing: hex[slot * length..<(slot + 1) * length])
                    slots[slot].signature.write(bound: length) { $0.add(signature) }
                }
            }
        }
    }

    /// Calls `body` with the signing inputs of the first `count` slots, all lent at once (`inputs` collects them).
    private static func withInputs<Result>(of slots: UnsafeMutableBufferPointer<Prepared>, _ count: Int,
                                           _ inputs: inout [UnsafeBufferPointer<UInt8>],
                                           _ body: ([UnsafeBufferPointer<UInt8>]) -> Result) -> Result {
        guard inputs.count < count else { return body(inputs) }
        return slots[inputs.count].signingInput.withBytes { input in
            inputs.append(input)
            return withInputs(of: slots, count, &inputs, body)
        }
    }

    /// Appends the sample prepared and signed in `slot` to `out`: its JSON text, written there and nowhere else.
    package mutating func writePrepared(_ slot: Int, to out: inout [UInt8]) {
        Self.writeJSON(&slots[slot], to: &out)
    }

    private static func writeJSON(_ sample: inout Prepared, to out: inout [UInt8]) {
        guard let shared = sample.shared.take() else { return }
        let bound = shared.bound + sample.own.count + sample.signature.count + 3
        sample.own.withPieces { own in
            sample.signature.withBytes { signature in
                out.append(addingCapacity: bound) { span in
                    span.withUnsafeMutableBufferPointer { buffer, initialized in
                        var cursor = ByteCursor(buffer, count: initialized)
                        cursor.add(UInt8(ascii: "{"))
                        for stretch in SampleField.jsonStretches { add(stretch, json: true, shared, own, to: &cursor) }
                        cursor.add(signature)
                        cursor.add(UInt8(ascii: "\""))
                        cursor.add(UInt8(ascii: "}"))
                        initialized = cursor.count
                    }
                }
            }
        }
    }

    /// Appends `"key": ` and the JSON text of a shared value.
    static func appendJSON(_ field: SampleField, _ value: WireValue, to out: inout [UInt8]) {
        out.append(contentsOf: field.key(json: true))
        switch value {
        case .string(let text): JSONBytes.string(text, to: &out)
        case .null: out.append(contentsOf: "null".utf8)
        case .number(let text): out.append(contentsOf: text.utf8)
        }
    }

    /// Appends the key and Python's `str()` of a shared value, as the signature reads them.
    static func appendSigning(_ field: SampleField, _ value: WireValue, to out: inout [UInt8]) {
        out.append(contentsOf: field.key(json: false))
        switch value {
        case .string(let text): out.append(contentsOf: text.utf8)
        case .null: out.append(contentsOf: "None".utf8)
        case .number(let text): out.append(contentsOf: text.utf8)
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

/// A sample's own values as the bytes its two forms copy, one after the other: `, "counter_volume": ` and the volume,
/// `, "message_id": ` and the message id quoted and escaped (JSON); `counter_volume` and the volume, `message_id` and
/// the message id (the signature's input, one stretch).
private struct OwnValues {
    private var bytes = ScratchBytes()
    /// Where each piece ends in `bytes`: JSON volume, JSON message id, signing volume, signing message id.
    private var ends = (0, 0, 0, 0)

    var count: Int { bytes.count }

    mutating func set(_ value: Volume, messageID: UnsafeBufferPointer<UInt8>) {
        var ends = (0, 0, 0, 0)
        // A volume's text takes at most 24 bytes (`-1.2345678901234567e-308`); an escaped byte at most 6.
        bytes.write(bound: SampleField.keyBytes + 2 * 32 + 7 * messageID.count + 6) { out in
            out.add(UInt8(ascii: ","))
            out.add(UInt8(ascii: " "))
            out.add(SampleField.counterVolume.key(json: true))
            let volumeStart = out.count
            switch value {
            case .int(let value): PythonRepr.append(value, to: &out)
            case .double(let value): PythonRepr.append(value, to: &out)
            }
            let volume = out.written(from: volumeStart)
            ends.0 = out.count
            out.add(UInt8(ascii: ","))
            out.add(UInt8(ascii: " "))
            out.add(SampleField.messageID.key(json: true))
            out.add(UInt8(ascii: "\""))
            JSONBytes.content(messageID, to: &out)
            out.add(UInt8(ascii: "\""))
            ends.1 = out.count
            out.add(SampleField.counterVolume.key(json: false))
            out.add(volume)
            ends.2 = out.count
            out.add(SampleField.messageID.key(json: false))
            out.add(messageID)
            ends.3 = out.count
        }
        self.ends = ends
    }

    /// Calls `body` with the pieces, which are valid during the call (mutating: see `ScratchBytes.withBytes`).
    mutating func withPieces<Result>(_ body: (Pieces) -> Result) -> Result {
        let ends = ends
        return bytes.withBytes { body(Pieces(bytes: $0, ends: ends)) }
    }

    /// `, "message_signature": "`: the signature's JSON up to its value (written by the encoder, never signed).
    nonisolated(unsafe) static let signatureKey = FixedBytes.make(Array(", ".utf8)
                                                                 + Array(SampleField.messageSignature.key(json: true))
                                                                 + [UInt8(ascii: "\"")])

    struct Pieces {
        let bytes: UnsafeBufferPointer<UInt8>
        let ends: (Int, Int, Int, Int)

        /// The stretch's pieces in their JSON or their signing form (`, "key": value`, `key` + value).
        func piece(_ stretch: SampleField.Stretch, json: Bool) -> UnsafeBufferPointer<UInt8> {
            if json, stretch.first == .messageSignature { return OwnValues.signatureKey }
            func range(_ field: SampleField) -> Range<Int> {
                switch (field, json) {
                case (.counterVolume, true): return 0..<ends.0
                case (.messageID, true): return ends.0..<ends.1
                case (.counterVolume, false): return ends.1..<ends.2
                default: return ends.2..<ends.3   // the message id's signing form
                }
            }
            let start = range(stretch.first).lowerBound, end = range(stretch.last).upperBound
            return UnsafeBufferPointer(rebasing: bytes[start..<end])
        }
    }
}

/// Bytes a sample is written into: storage kept at its largest size and written through a pointer, so that a piece
/// costs a bounds check and a copy (no uniqueness check or reference counting per piece).
struct ScratchBytes {
    private var storage: [UInt8] = []
    private(set) var count = 0

    /// Replaces the bytes with what `body` writes, at most `bound` bytes.
    mutating func write(bound: Int, _ body: (inout ByteCursor) -> Void) {
        if storage.count < bound {
            storage.append(contentsOf: repeatElement(0, count: max(bound, 2 * storage.count) - storage.count))
        }
        count = storage.withUnsafeMutableBufferPointer { buffer in
            var cursor = ByteCursor(buffer, count: 0)
            body(&cursor)
            return cursor.count
        }
    }

    /// Calls `body` with the bytes. Mutating only so that the storage is lent, not retained and released around
    /// the call (it runs several times for every sample).
    mutating func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        let count = count
        return storage.withUnsafeMutableBufferPointer { body(UnsafeBufferPointer(rebasing: $0[..<count])) }
    }
}

/// Where bytes are written: an array, or a buffer through a `ByteCursor`.
protocol ByteSink {
    mutating func add(_ bytes: UnsafeBufferPointer<UInt8>)
    mutating func add(_ byte: UInt8)
}

extension Array: ByteSink where Element == UInt8 {
    mutating func add(_ bytes: UnsafeBufferPointer<UInt8>) { append(contentsOf: bytes) }
    mutating func add(_ byte: UInt8) { append(byte) }
}

/// Writes into a buffer, never past its end.
struct ByteCursor: ByteSink {
    private let buffer: UnsafeMutableBufferPointer<UInt8>
    private(set) var count: Int

    init(_ buffer: UnsafeMutableBufferPointer<UInt8>, count: Int) {
        self.buffer = buffer
        self.count = count
    }

    mutating func add(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress else { return }
        precondition(bytes.count <= buffer.count - count, "ByteCursor: write past the buffer's end")
        (buffer.baseAddress! + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    /// The bytes written since `start` (valid while the buffer is).
    func written(from start: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: buffer[start..<count])
    }

    mutating func add(_ byte: UInt8) {
        precondition(count < buffer.count, "ByteCursor: write past the buffer's end")
        buffer[count] = byte
        count += 1
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

    static func content<Sink: ByteSink>(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout Sink) {
        // Most strings need no escape: one append.
        guard needsEscape(bytes) else {
            out.add(bytes)
            return
        }
        var start = 0
        for (index, byte) in bytes.enumerated() {
            guard byte < 0x20 || byte == 0x22 || byte == 0x5C else { continue }
            out.add(UnsafeBufferPointer(rebasing: bytes[start..<index]))
            start = index + 1
            out.add(UInt8(ascii: "\\"))
            switch byte {
            case 0x22, 0x5C: out.add(byte)
            case 0x0A: out.add(UInt8(ascii: "n"))
            case 0x0D: out.add(UInt8(ascii: "r"))
            case 0x09: out.add(UInt8(ascii: "t"))
            default:
                let digits: StaticString = "0123456789abcdef"
                out.add(UInt8(ascii: "u"))
                out.add(UInt8(ascii: "0"))
                out.add(UInt8(ascii: "0"))
                out.add(digits.utf8Start[Int(byte >> 4)])
                out.add(digits.utf8Start[Int(byte & 0xF)])
            }
        }
        out.add(UnsafeBufferPointer(rebasing: bytes[start...]))
    }

    /// Whether `bytes` holds a quote, a backslash or a control character, looked for eight bytes at a time (a
    /// sample's message id is checked for every sample).
    static func needsEscape(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        // Some byte of `word` is zero iff `(word - ones) & ~word & highs` is not; a byte is below 0x20 iff its top
        // three bits are zero.
        func hasZero(_ word: UInt64) -> Bool { (word &- ones) & ~word & highs != 0 }
        var index = 0
        while index + 8 <= bytes.count {
            let word = UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)
            if hasZero(word ^ (0x22 &* ones)) || hasZero(word ^ (0x5C &* ones)) || hasZero(word & (0xE0 &* ones)) {
                return true
            }
            index += 8
        }
        while index < bytes.count {
            let byte = base[index]
            if byte < 0x20 || byte == 0x22 || byte == 0x5C { return true }
            index += 1
        }
        return false
    }
}

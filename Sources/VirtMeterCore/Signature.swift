import Crypto

/// Ceilometer's `message_signature`: lowercase hex HMAC-SHA256 over the sample's leaves, keys sorted by code
/// point at every level, each leaf fed as its `parent:child` name followed by Python's `str()` of its value.
public struct SampleSigner: Sendable {
    /// An HMAC already keyed with the secret, copied for each signature. `HMAC<SHA256>` is not marked Sendable, but
    /// it is a value whose hash states are copy-on-write, and the template itself is never mutated: sharing is safe.
    private struct KeyedHMAC: @unchecked Sendable {
        let template: HMAC<SHA256>
    }
    private let secret: KeyedHMAC?

    /// A signer for `secret`; an empty secret signs nothing (the signature is the empty string), as ceilometer does.
    public init(secret: String) {
        self.secret = secret.isEmpty ? nil
            : KeyedHMAC(template: HMAC<SHA256>(key: SymmetricKey(data: Array(secret.utf8))))
    }

    /// Whether this signer produces signatures at all.
    public var isSigning: Bool { secret != nil }

    /// The signature of a sample given as a JSON object; its top-level `message_signature` is ignored.
    public func signature(of message: JSONValue) -> String {
        guard secret != nil else { return "" }
        var input: [UInt8] = []
        Self.walk(message, prefix: nil) { name, text in
            input += name.utf8
            input += text.utf8
        }
        return mac(input)
    }

    /// The signature of a wire sample, equal to `signature(of: sample.json)` but cheaper: a sample's top-level keys
    /// are fixed, so only its resource_metadata needs walking, and that comes pre-walked: the domain's `metadata`
    /// with the meter's `extra` keys joining or replacing its keys.
    /// `buffer` is scratch space that a caller signing many samples may pass again and again, to spare allocations.
    public func signature(of sample: Sample, metadata: SigningSegments, extra: SigningSegments = SigningSegments([]),
                          buffer: inout [UInt8]) -> String {
        guard secret != nil else { return "" }
        var input: [UInt8] = []
        swap(&input, &buffer)
        defer { swap(&input, &buffer) }
        input.removeAll(keepingCapacity: true)
        input.reserveCapacity(512 + metadata.byteCount)
        func leaf(_ name: String, _ text: String) {
            input += name.utf8
            input += text.utf8
        }
        // The top-level keys in code point order, as the generic walk would visit them.
        leaf("counter_name", sample.name)
        leaf("counter_type", sample.type.rawValue)
        leaf("counter_unit", sample.unit)
        switch sample.volume {
        case .int(let value): leaf("counter_volume", String(value))
        case .double(let value): leaf("counter_volume", PythonRepr.float(value))
        }
        leaf("message_id", sample.messageID)
        leaf("monotonic_time", PythonRepr.float(sample.monotonicTime))
        leaf("project_id", sample.projectID ?? "None")
        leaf("project_name", "None")
        leaf("resource_id", sample.resourceID)
        metadata.merged(with: extra) { input += $0 }
        leaf("source", sample.source)
        leaf("timestamp", sample.timestamp)
        leaf("user_id", sample.userID ?? "None")
        leaf("user_name", "None")
        return mac(input)
    }

    private func mac(_ input: [UInt8]) -> String {
        guard let secret else { return "" }
        var hmac = secret.template
        input.withUnsafeBytes { hmac.update(data: $0) }
        return hmac.finalize().withUnsafeBytes { Self.hex($0) }
    }

    /// Whether `message` carries the signature this signer computes for it (constant time comparison).
    public func verify(_ message: JSONValue) -> Bool {
        guard let claimed = message["message_signature"]?.stringValue else { return false }
        let expected = signature(of: message)
        guard claimed.utf8.count == expected.utf8.count else { return false }
        return zip(claimed.utf8, expected.utf8).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// Calls `visit(name, str(value))` for each leaf in signing order: the (name, text) pairs that feed the HMAC.
    public static func walk(_ message: JSONValue, prefix: String?, _ visit: (String, String) -> Void) {
        guard case .object(let pairs) = message else { return }
        for (key, value) in pairs.sorted(by: { SigningSegments.precedes($0.0, $1.0) }) {
            if prefix == nil && key == "message_signature" { continue }
            let name = prefix.map { "\($0):\(key)" } ?? key
            if case .object = value {
                walk(value, prefix: name, visit)
            } else {
                visit(name, PythonRepr.str(value))
            }
        }
    }

    static func hex<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            var position = 0
            for byte in bytes {
                out[position] = digits.utf8Start[Int(byte >> 4)]
                out[position + 1] = digits.utf8Start[Int(byte & 0x0F)]
                position += 2
            }
            return position
        }
    }
}

/// A sample's resource_metadata walked for signing: per top-level key, in signing order, the HMAC input bytes of all
/// its leaves (`resource_metadata:flavor:ram` + `2048`, ...). A domain's base metadata is walked once per cycle and
/// merged with each meter's few extra keys, instead of walking the whole dict for every sample.
public struct SigningSegments: Sendable {
    public private(set) var entries: [(key: String, bytes: [UInt8])] = []
    let byteCount: Int

    /// Walks the metadata dict `pairs` (the value of the sample's `resource_metadata`).
    public init(_ pairs: [(String, JSONValue)]) {
        entries = pairs.sorted { Self.precedes($0.0, $1.0) }.map { key, value in
            var bytes: [UInt8] = []
            SampleSigner.walk(.object([(key, value)]), prefix: "resource_metadata") { name, text in
                bytes += name.utf8
                bytes += text.utf8
            }
            return (key, bytes)
        }
        byteCount = entries.reduce(0) { $0 + $1.bytes.count }
    }

    /// Visits the bytes of these segments with `extra`'s keys replacing or joining them, in signing order: the
    /// walk of the dict that `SampleStamper.merge` makes of the two.
    func merged(with extra: SigningSegments, _ visit: ([UInt8]) -> Void) {
        var i = 0, j = 0
        while i < entries.count || j < extra.entries.count {
            if j == extra.entries.count || (i < entries.count && Self.precedes(entries[i].key, extra.entries[j].key)) {
                visit(entries[i].bytes)
                i += 1
            } else {
                if i < entries.count && entries[i].key == extra.entries[j].key { i += 1 }
                visit(extra.entries[j].bytes)
                j += 1
            }
        }
    }

    static func precedes(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
    }
}

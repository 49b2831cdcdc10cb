import Crypto

/// Ceilometer's `message_signature`: lowercase hex HMAC-SHA256 over the sample's leaves, keys sorted by code
/// point at every level, each leaf fed as its `parent:child` name followed by Python's `str()` of its value.
public struct SampleSigner: Sendable {
    /// The HMAC key. `SymmetricKey` is not marked Sendable, but it is immutable once made, so sharing it is safe.
    private struct Key: @unchecked Sendable {
        let key: SymmetricKey
    }
    private let secret: Key?

    /// A signer for `secret`; an empty secret signs nothing (the signature is the empty string), as ceilometer does.
    public init(secret: String) {
        self.secret = secret.isEmpty ? nil : Key(key: SymmetricKey(data: Array(secret.utf8)))
    }

    /// Whether this signer produces signatures at all.
    public var isSigning: Bool { secret != nil }

    /// The signature of a sample given as a JSON object; its top-level `message_signature` is ignored.
    public func signature(of message: JSONValue) -> String {
        guard let secret else { return "" }
        var hmac = HMAC<SHA256>(key: secret.key)
        Self.walk(message, prefix: nil) { name, text in
            hmac.update(data: Array(name.utf8))
            hmac.update(data: Array(text.utf8))
        }
        return Self.hex(Array(hmac.finalize()))
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
        for (key, value) in pairs.sorted(by: { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) }) {
            if prefix == nil && key == "message_signature" { continue }
            let name = prefix.map { "\($0):\(key)" } ?? key
            if case .object = value {
                walk(value, prefix: name, visit)
            } else {
                visit(name, PythonRepr.str(value))
            }
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Ceilometer's `message_signature`: lowercase hex HMAC-SHA256 over the sample's leaves, keys sorted by code
/// point at every level, each leaf fed as its `parent:child` name followed by Python's `str()` of its value.
package struct SampleSigner: Sendable {
    private let secret: HMACSHA256?

    /// A signer for `secret`; an empty secret signs nothing (the signature is the empty string), as ceilometer does.
    package init(secret: String) {
        self.secret = secret.isEmpty ? nil : HMACSHA256(key: Array(secret.utf8))
    }

    /// Whether this signer produces signatures at all.
    var isSigning: Bool { secret != nil }

    /// The signature of a sample given as a JSON object; its top-level `message_signature` is ignored.
    package func signature(of message: JSONValue) -> String {
        guard secret != nil else { return "" }
        var input: [UInt8] = []
        Self.walk(message, prefix: nil) { name, text in
            input += name.utf8
            input += text.utf8
        }
        return signature(ofInput: input)
    }

    /// The signature of the HMAC input `input` (the (name, text) pairs of a sample already laid end to end).
    func signature(ofInput input: [UInt8]) -> String {
        var text: [UInt8] = []
        appendSignature(ofInput: input, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    /// Appends the signature of `input`, in hex, to `out` (nothing when this signer does not sign).
    func appendSignature(ofInput input: [UInt8], to out: inout [UInt8]) {
        guard let secret else { return }
        input.withUnsafeBufferPointer { secret.withCode(of: $0) { Hex.append($0, to: &out) } }
    }

    /// The length of a signature in hex.
    static let hexLength = 64

    /// The most inputs `writeSignatures` takes at once.
    static let batchSize = HMACSHA256.batchSize

    /// Writes the signatures of `inputs` (at most `batchSize`), computed together (`HMACSHA256.withCodes`), in hex
    /// at `out`, one after the other; returns the length of each (0 when this signer does not sign).
    func writeSignatures(of inputs: [UnsafeBufferPointer<UInt8>], to out: UnsafeMutablePointer<UInt8>) -> Int {
        guard let secret else { return 0 }
        secret.withCodes(of: inputs) { codes in
            for index in 0..<min(inputs.count, Self.batchSize) {
                Hex.write(UnsafeRawBufferPointer(rebasing: codes[32 * index..<32 * (index + 1)]),
                          to: out + index * Self.hexLength)
            }
        }
        return Self.hexLength
    }

    /// Whether `message` carries the signature this signer computes for it (constant time comparison).
    package func verify(_ message: JSONValue) -> Bool {
        guard let claimed = message["message_signature"]?.stringValue else { return false }
        let expected = signature(of: message)
        guard claimed.utf8.count == expected.utf8.count else { return false }
        return zip(claimed.utf8, expected.utf8).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// Calls `visit(name, str(value))` for each leaf in signing order: the (name, text) pairs that feed the HMAC.
    package static func walk(_ message: JSONValue, prefix: String?, _ visit: (String, String) -> Void) {
        guard case .object(let pairs) = message else { return }
        for (key, value) in pairs.sorted(by: { SampleField.precedes($0.0, $1.0) }) {
            if prefix == nil && key == "message_signature" { continue }
            let name = prefix.map { "\($0):\(key)" } ?? key
            if case .object = value {
                walk(value, prefix: name, visit)
            } else {
                visit(name, PythonRepr.str(value))
            }
        }
    }
}

/// Lowercase hex, from a table of each byte's two digits (one store per byte): every sample's signature and message
/// id, and the host hash, are written with it.
enum Hex {
    /// `bytes` in hex, appended to `out` in one piece.
    static func append(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 * bytes.count) { text in
            write(bytes, to: text.baseAddress!)
            out.append(contentsOf: text)
        }
    }

    /// Writes `bytes` in hex at `out` (twice as many bytes).
    static func write(_ bytes: UnsafeRawBufferPointer, to out: UnsafeMutablePointer<UInt8>) {
        let raw = UnsafeMutableRawPointer(out)
        for (index, byte) in bytes.enumerated() {
            raw.storeBytes(of: pairs[Int(byte)], toByteOffset: 2 * index, as: UInt16.self)
        }
    }

    /// Writes the low `digits` hex digits of `value` (an even number) at `out`, the most significant first.
    static func write(_ value: UInt64, digits: Int, to out: UnsafeMutablePointer<UInt8>) {
        let raw = UnsafeMutableRawPointer(out)
        for index in 0..<digits / 2 {
            let byte = UInt8(truncatingIfNeeded: value >> UInt64(8 * (digits / 2 - 1 - index)))
            raw.storeBytes(of: pairs[Int(byte)], toByteOffset: 2 * index, as: UInt16.self)
        }
    }

    /// Each byte's two digits as they lie in memory. Immutable once made.
    nonisolated(unsafe) private static let pairs: UnsafeBufferPointer<UInt16> = {
        let digits = Array("0123456789abcdef".utf8)
        let table = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: 256)
        for byte in 0..<256 {
            table[byte] = (UInt16(digits[byte >> 4]) | UInt16(digits[byte & 0xF]) << 8).littleEndian
        }
        return UnsafeBufferPointer(table)
    }()
}

import CSHA256

/// SHA-256 and SHA-224 (FIPS 180-4) over the C compression of `CSHA256` (the CPU's SHA extensions where it has
/// them): whole messages here, and HMAC-SHA256 below for the sample signature (`SampleSigner`).
enum SHA256 {
    /// Whether the SHA extensions are used (this CPU has them and they are not turned off). Set false, every hash
    /// takes the portable code: for its tests.
    static var usesHardware: Bool {
        get { virtmeter_sha256_hardware() != 0 }
        set { virtmeter_sha256_use_hardware(newValue ? 1 : 0) }
    }

    /// The SHA-256 digest (32 bytes) of `bytes`.
    static func digest(_ bytes: [UInt8]) -> [UInt8] {
        digest(bytes, sha224: false)
    }

    /// The SHA-256 digest, or the SHA-224 one (28 bytes).
    static func digest(_ bytes: [UInt8], sha224: Bool) -> [UInt8] {
        var state = [UInt32](repeating: 0, count: 8)
        var digest = [UInt8](repeating: 0, count: 32)
        virtmeter_sha256_init(&state, sha224 ? 1 : 0)
        bytes.withUnsafeBufferPointer { virtmeter_sha256_finish(&state, $0.baseAddress, $0.count, 0, &digest) }
        return sha224 ? Array(digest.prefix(28)) : digest
    }
}

/// SHA-224, for ceilometer's `resource_metadata.host`: `sha224(project_id + host)`.
enum SHA224 {
    /// The lowercase hex digest of `text`'s UTF-8 bytes.
    static func hexDigest(_ text: String) -> String {
        var hex: [UInt8] = []
        SHA256.digest(Array(text.utf8), sha224: true).withUnsafeBytes { Hex.append($0, to: &hex) }
        return String(decoding: hex, as: UTF8.self)
    }
}

/// HMAC-SHA256 with a fixed key: the SHA-256 states after the key's inner and outer pad blocks, computed once, so a
/// code compresses only its message and the inner digest, with no allocation.
struct HMACSHA256: Sendable {
    /// The two states side by side (inner, then outer): a plain value, which a copy does not retain.
    private let states: SIMD16<UInt32>

    init(key: [UInt8]) {
        var key = key.count > 64 ? SHA256.digest(key) : key
        key += [UInt8](repeating: 0, count: 64 - key.count)
        func padded(_ pad: UInt8) -> [UInt32] {
            var state = [UInt32](repeating: 0, count: 8)
            virtmeter_sha256_init(&state, 0)
            virtmeter_sha256_blocks(&state, key.map { $0 ^ pad }, 1)
            return state
        }
        states = SIMD16(padded(0x36) + padded(0x5C))
    }

    /// Calls `body` with the inner and the outer state (8 words each).
    private func withStates(_ body: (UnsafePointer<UInt32>, UnsafePointer<UInt32>) -> Void) {
        withUnsafePointer(to: states) { states in
            states.withMemoryRebound(to: UInt32.self, capacity: 16) { body($0, $0 + 8) }
        }
    }

    /// The code (32 bytes) of `message`.
    func code(of message: [UInt8]) -> [UInt8] {
        var code: [UInt8] = []
        message.withUnsafeBufferPointer { message in
            withCode(of: message) { code = Array($0) }
        }
        return code
    }

    /// The most messages `withCodes(of:)` takes at once.
    static let batchSize = 16

    /// Calls `body` with the codes of `messages` (at most `batchSize`), computed together
    /// (`virtmeter_hmac_sha256_batch`): 32 bytes each, back to back, in order.
    func withCodes(of messages: [UnsafeBufferPointer<UInt8>], _ body: (UnsafeRawBufferPointer) -> Void) {
        let count = min(messages.count, Self.batchSize)
        withUnsafeTemporaryAllocation(of: UnsafePointer<UInt8>?.self, capacity: count) { pointers in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: count) { lengths in
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32 * count) { codes in
                    for index in 0..<count {
                        pointers[index] = messages[index].baseAddress
                        lengths[index] = messages[index].count
                    }
                    withStates { inner, outer in
                        virtmeter_hmac_sha256_batch(inner, outer, pointers.baseAddress, lengths.baseAddress,
                                                    Int32(count), codes.baseAddress)
                    }
                    body(UnsafeRawBufferPointer(codes))
                }
            }
        }
    }

    /// Calls `body` with the code of `message`, in a buffer of its own.
    func withCode(of message: UnsafeBufferPointer<UInt8>, _ body: (UnsafeRawBufferPointer) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { code in
            withStates { inner, outer in
                virtmeter_hmac_sha256(inner, outer, message.baseAddress, message.count, code.baseAddress)
            }
            body(UnsafeRawBufferPointer(code))
        }
    }
}

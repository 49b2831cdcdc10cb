import CChecksum
import Testing

/// The spool's record checksum: the CPU's path (three interleaved streams for long buffers) against the table and a
/// bit-at-a-time reference.
@Suite("CRC-32C")
struct ChecksumTests {
    /// CRC-32C a bit at a time, straight from the polynomial (reflected 0x82F63B78).
    static func reference(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    static func crc(_ bytes: ArraySlice<UInt8>, from start: UInt32 = 0, portable: Bool = false) -> UInt32 {
        bytes.withUnsafeBytes {
            portable ? virtmeter_crc32c_portable(start, $0.baseAddress, $0.count)
                : virtmeter_crc32c(start, $0.baseAddress, $0.count)
        }
    }

    @Test("the check value and RFC 3720's test vectors, on both paths")
    func knownValues() {
        let vectors: [([UInt8], UInt32)] = [
            (Array("123456789".utf8), 0xE306_9283), ([], 0), ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
            ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43), ((0..<32).map { UInt8($0) }, 0x46DD_794E),
            ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        ]
        for (bytes, value) in vectors {
            #expect(Self.crc(bytes[...]) == value, "\(bytes)")
            #expect(Self.crc(bytes[...], portable: true) == value, "\(bytes)")
        }
    }

    @Test("both paths agree for every length to 1,300 and around the 3 x 256 and 3 x 4,096 byte blocks, at 8 offsets")
    func pathsAgree() {
        var generator = SystemRandomNumberGenerator()
        let buffer = (0..<(3 * 3 * 4096 + 3 * 256 + 64)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var lengths = Array(0...1300)
        for center in [3 * 256, 2 * 3 * 256, 3 * 4096, 3 * 4096 + 3 * 256, 2 * 3 * 4096, 3 * 3 * 4096 + 3 * 256] {
            lengths += (center - 9)...(center + 9)
        }
        for length in lengths {
            for offset in 0..<8 {
                let bytes = buffer[offset..<(offset + length)]
                let start = UInt32.random(in: 0...UInt32.max, using: &generator)
                #expect(Self.crc(bytes, from: start) == Self.crc(bytes, from: start, portable: true),
                        "length \(length) at offset \(offset) from \(start)")
            }
        }
        for length in [0, 1, 7, 8, 9, 100, 767, 768, 769, 3 * 4096 + 1, 3 * 3 * 4096 + 3 * 256 + 1] {
            #expect(Self.crc(buffer[3..<(3 + length)]) == Self.reference(buffer[3..<(3 + length)]), "length \(length)")
        }
    }

    @Test("a CRC continued over a buffer's second part equals the CRC of the whole, wherever it is split")
    func continues() {
        let bytes = (0..<(3 * 4096 + 1000)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 5) }
        let whole = Self.crc(bytes[...])
        for split in [0, 1, 5, 767, 768, 1000, 4096, 3 * 4096, bytes.count] {
            #expect(Self.crc(bytes[split...], from: Self.crc(bytes[..<split])) == whole, "split at \(split)")
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The clocks a sample is stamped with.
package enum SampleClock {
    /// Seconds on CLOCK_MONOTONIC, as Python's `time.monotonic()`.
    package static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The wall clock in nanoseconds since the Unix epoch.
    package static func wallNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// UTC `YYYY-MM-DDTHH:MM:SS.ffffff` (ceilometer's sample timestamp); `separator` " " gives oslo's envelope form.
    package static func utcTimestamp(nanoseconds: Int64, separator: Character = "T") -> String {
        var seconds = time_t(nanoseconds / 1_000_000_000)
        let micros = Int((nanoseconds % 1_000_000_000) / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let fields: [(value: Int, width: Int, then: UInt8?)] = [
            (Int(parts.tm_year) + 1900, 4, UInt8(ascii: "-")), (Int(parts.tm_mon) + 1, 2, UInt8(ascii: "-")),
            (Int(parts.tm_mday), 2, separator.asciiValue ?? UInt8(ascii: "T")),
            (Int(parts.tm_hour), 2, UInt8(ascii: ":")), (Int(parts.tm_min), 2, UInt8(ascii: ":")),
            (Int(parts.tm_sec), 2, UInt8(ascii: ".")), (micros, 6, nil),
        ]
        return String(unsafeUninitializedCapacity: 26) { text in
            var end = 0
            for field in fields {
                var value = max(0, field.value)
                for index in stride(from: end + field.width - 1, through: end, by: -1) {
                    text[index] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
                end += field.width
                if let then = field.then {
                    text[end] = then
                    end += 1
                }
            }
            return end
        }
    }
}

/// Time-based (version 1) UUIDs as Python's `uuid.uuid1()` makes them: 100 ns ticks since 1582-10-15, a random
/// clock sequence and a random multicast node id, strictly increasing ticks so no two are equal.
package final class UUIDv1Generator: Sendable {
    private struct State {
        var lastTicks: UInt64 = 0
    }
    private let state = Mutex(State())
    /// The UUID's last two groups, the same in every UUID: `-` clock sequence (variant 10) `-` node.
    private let tail: [UInt8]

    package init() {
        var rng = SystemRandomNumberGenerator()
        let clockSequence = UInt16.random(in: 0...0x3FFF, using: &rng)
        let node = (UInt64.random(in: 0...0xFFFF_FFFF_FFFF, using: &rng)) | 0x0100_0000_0000
        var tail = [UInt8](repeating: UInt8(ascii: "-"), count: Self.length - 18)
        tail.withUnsafeMutableBufferPointer { tail in
            Hex.write(UInt64(clockSequence | 0x8000), digits: 4, to: tail.baseAddress! + 1)
            Hex.write(node, digits: 12, to: tail.baseAddress! + 6)
        }
        self.tail = tail
    }

    /// The next UUID, given the wall clock in ns since the Unix epoch.
    package func next(wallNanoseconds: Int64 = SampleClock.wallNanoseconds()) -> String {
        var text: [UInt8] = []
        append(wallNanoseconds: wallNanoseconds, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    /// Appends the next UUID's 36 characters to `out`.
    package func append(wallNanoseconds: Int64, to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.length) { text in
            write(wallNanoseconds: wallNanoseconds, to: text.baseAddress!)
            out.append(contentsOf: text)
        }
    }

    /// A UUID's length in characters.
    package static let length = 36

    /// Writes the next UUID's 36 characters at `out`.
    package func write(wallNanoseconds: Int64, to out: UnsafeMutablePointer<UInt8>) {
        let gregorianOffset: UInt64 = 0x01B2_1DD2_1381_4000
        let now = UInt64(wallNanoseconds / 100) &+ gregorianOffset
        let ticks = state.withLock { state in
            state.lastTicks = max(now, state.lastTicks + 1)
            return state.lastTicks
        }
        Hex.write(ticks & 0xFFFF_FFFF, digits: 8, to: out)
        out[8] = UInt8(ascii: "-")
        Hex.write((ticks >> 32) & 0xFFFF, digits: 4, to: out + 9)
        out[13] = UInt8(ascii: "-")
        Hex.write((ticks >> 48) & 0x0FFF | 0x1000, digits: 4, to: out + 14)
        tail.withUnsafeBufferPointer { (out + 18).update(from: $0.baseAddress!, count: $0.count) }
    }

}

/// Random (version 4) UUIDs, as oslo.messaging gives its messages.
package enum RandomUUID {
    /// Random bytes read from the kernel 4 KiB at a time: every message takes two ids, and a system call for each
    /// (`SystemRandomNumberGenerator`'s) cost more than the rest of its envelope.
    private struct Pool: ~Copyable {
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        var used = 4096

        mutating func next() -> (UInt64, UInt64) {
            if used == bytes.count {
                var filled = 0
                let file = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
                while file >= 0 && filled < bytes.count {
                    let got = read(file, bytes.baseAddress! + filled, bytes.count - filled)
                    if got > 0 { filled += got } else if got == 0 || errno != EINTR { break }
                }
                if file >= 0 { close(file) }
                if filled < bytes.count {   // no /dev/urandom: the standard generator
                    var generator = SystemRandomNumberGenerator()
                    for offset in stride(from: 0, to: bytes.count, by: 8) {
                        bytes.storeBytes(of: generator.next() as UInt64, toByteOffset: offset, as: UInt64.self)
                    }
                }
                used = 0
            }
            defer { used += 16 }
            return (bytes.load(fromByteOffset: used, as: UInt64.self),
                    bytes.load(fromByteOffset: used + 8, as: UInt64.self))
        }

        deinit { bytes.deallocate() }
    }

    private static let pool = Mutex(Pool())

    /// A new random UUID, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, or its 32 hex digits alone (`dashes` false, as
    /// oslo.messaging's `_unique_id`).
    package static func string(dashes: Bool = true) -> String {
        var (high, low) = pool.withLock { $0.next() }
        high = high & ~0xF000 | 0x4000                                 // version 4
        low = low & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000     // RFC 4122 variant
        return String(unsafeUninitializedCapacity: 36) { buffer in
            let out = buffer.baseAddress!
            guard dashes else {
                Hex.write(high, digits: 16, to: out)
                Hex.write(low, digits: 16, to: out + 16)
                return 32
            }
            Hex.write(high >> 32, digits: 8, to: out)
            Hex.write(high >> 16 & 0xFFFF, digits: 4, to: out + 9)
            Hex.write(high & 0xFFFF, digits: 4, to: out + 14)
            Hex.write(low >> 48, digits: 4, to: out + 19)
            Hex.write(low & 0xFFFF_FFFF_FFFF, digits: 12, to: out + 24)
            for dash in [8, 13, 18, 23] { out[dash] = UInt8(ascii: "-") }
            return 36
        }
    }
}

/// Python's `str()` of the values ceilometer signs, so an HMAC computed here equals the one ceilometer computes.
package enum PythonRepr {
    /// Python's `repr(float)`: the shortest digits that round-trip, fixed notation for decimal exponents in
    /// [-4, 16), scientific with a signed two-digit exponent outside it (`512.0`, `1e-05`, `1e+16`).
    package static func float(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        if value == 0 { return value.sign == .minus ? "-0.0" : "0.0" }
        // Swift's own shortest form is Python's wherever Swift writes it without an exponent and Python would too:
        // Python switches to an exponent below 1e-4 and from 1e16; Swift's fixed notation lies inside that range.
        let swift = value.description
        if !swift.utf8.contains(UInt8(ascii: "e")) { return swift }
        let (negative, digits, pointPosition) = shortestDigits(value)
        var out = negative ? "-" : ""
        if pointPosition > 16 || pointPosition < -3 {
            let exponent = pointPosition - 1
            out.append(digits.first!)
            if digits.count > 1 {
                out += "." + digits.dropFirst()
            }
            out += exponent < 0 ? "e-" : "e+"
            let magnitude = String(abs(exponent))
            out += magnitude.count < 2 ? "0" + magnitude : magnitude
        } else if pointPosition <= 0 {
            out += "0." + String(repeating: "0", count: -pointPosition) + digits
        } else if pointPosition >= digits.count {
            out += digits + String(repeating: "0", count: pointPosition - digits.count) + ".0"
        } else {
            let split = digits.index(digits.startIndex, offsetBy: pointPosition)
            out += digits[..<split] + "." + digits[split...]
        }
        return out
    }

    /// Appends `repr(value)` of an integer.
    static func append<Sink: ByteSink>(_ value: Int64, to out: inout Sink) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var magnitude = value.magnitude, start = digits.count
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { out.add(UInt8(ascii: "-")) }
            out.add(UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// Appends `repr(value)` of a float (`float` as bytes): a whole number below 1e16 straight from its digits.
    static func append<Sink: ByteSink>(_ value: Double, to out: inout Sink) {
        guard value != 0, value.magnitude < 1e16, value.rounded(.towardZero) == value else {
            var text = float(value)
            return text.withUTF8 { out.add($0) }
        }
        append(Int64(value), to: &out)
        out.add(UInt8(ascii: "."))
        out.add(UInt8(ascii: "0"))
    }

    /// Sign, significant digits and decimal point position (value = 0.DIGITS × 10^position) of the shortest
    /// round-tripping representation, taken from Swift's own shortest formatting.
    static func shortestDigits(_ value: Double) -> (Bool, String, Int) {
        var text = Substring(value.magnitude.description)   // "1234.5", "1e-05", "1.2345e+19"
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...])!
            text = text[..<e]
        }
        var integerPart = text
        var fraction: Substring = ""
        if let dot = text.firstIndex(of: ".") {
            integerPart = text[..<dot]
            fraction = text[text.index(after: dot)...]
        }
        var digits = String(integerPart) + fraction
        var position = integerPart.count + exponent
        while digits.first == "0" { digits.removeFirst(); position -= 1 }
        while digits.last == "0" { digits.removeLast() }
        return (value.sign == .minus, digits, position)
    }

    /// `str(value)` for a JSON-decoded value: `None`, `True`, `False`, plain integers, float repr, strings as they
    /// are, and lists as Python prints them after ceilometer's `decode_unicode` turned their strings into bytes.
    package static func str(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): return s
        default: return repr(value)
        }
    }

    static func repr(_ value: JSONValue) -> String {
        switch value {
        case .null: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return float(d)
        case .string(let s): return bytesRepr(s)
        case .array(let items):
            return "[" + items.map { repr($0) }.joined(separator: ", ") + "]"
        case .object(let pairs):
            // ceilometer's decode_unicode rebuilds dicts in sorted key order.
            let parts = pairs.sorted { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) }
                .map { bytesRepr($0.0) + ": " + repr($0.1) }
            return "{" + parts.joined(separator: ", ") + "}"
        }
    }

    /// Python's repr of `s.encode('utf-8')`: `b'...'`, quoting with `"` when the text holds `'` but no `"`.
    static func bytesRepr(_ s: String) -> String {
        let bytes = Array(s.utf8)
        let quote: UInt8 = bytes.contains(0x27) && !bytes.contains(0x22) ? 0x22 : 0x27
        var out = "b" + String(UnicodeScalar(quote))
        for byte in bytes {
            switch byte {
            case quote, 0x5C: out += "\\" + String(UnicodeScalar(byte))
            case 0x09: out += "\\t"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x20..<0x7F: out += String(UnicodeScalar(byte))
            default:
                let hex = String(byte, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            }
        }
        return out + String(UnicodeScalar(quote))
    }
}

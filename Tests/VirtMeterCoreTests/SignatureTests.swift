import Testing
import VirtMeterTestSupport
@testable import VirtMeterCore

@Suite("message_signature against ceilometer's own vectors")
struct SignatureTests {
    struct Vector: CustomTestStringConvertible {
        let label: String
        let secret: String
        let message: JSONValue
        let pairs: [(String, String)]
        let signature: String
        var testDescription: String { label }
    }

    static func vectors() throws -> [Vector] {
        guard case .array(let items) = try JSONValue.parse(try fixture("ceilometer-signature-vectors")) else {
            throw JSONParseError(offset: 0, reason: "vectors file is not a list")
        }
        return items.map { item in
            var pairs: [(String, String)] = []
            if case .array(let list)? = item["hmac_input_pairs"] {
                for case .array(let pair) in list {
                    pairs.append((pair[0].stringValue ?? "", pair[1].stringValue ?? ""))
                }
            }
            return Vector(label: item["label"]?.stringValue ?? "?", secret: item["secret"]?.stringValue ?? "",
                          message: item["message"] ?? .null, pairs: pairs,
                          signature: item["signature"]?.stringValue ?? "")
        }
    }

    @Test("there are the 9 cases") func count() throws {
        #expect(try Self.vectors().count == 9)
    }

    @Test("the signature equals ceilometer's", arguments: try vectors())
    func signature(_ vector: Vector) {
        #expect(SampleSigner(secret: vector.secret).signature(of: vector.message) == vector.signature)
    }

    @Test("the HMAC input is ceilometer's (name, str(value)) sequence", arguments: try vectors())
    func hmacInput(_ vector: Vector) {
        var pairs: [(String, String)] = []
        SampleSigner.walk(vector.message, prefix: nil) { pairs.append(($0, $1)) }
        #expect(pairs.map(\.0) == vector.pairs.map(\.0))
        #expect(pairs.map(\.1) == vector.pairs.map(\.1))
    }

    @Test("a signed sample verifies, and fails once a value changes")
    func verifyDetectsTampering() throws {
        let signer = SampleSigner(secret: "s3cret")
        let sample = Sample(source: "openstack", name: "cpu", type: .cumulative, unit: "ns", volume: .int(5),
                            userID: "u", projectID: "p", resourceID: "r", timestamp: "2026-01-01T00:00:00.000000",
                            resourceMetadata: .object([("display_name", .string("vm"))]), messageID: "m",
                            monotonicTime: 1.5)
        var signed = try #require(try encodedRecords([sample], signer: signer).decodedSamples().first)
        #expect(signer.verify(signed.oracleJSON))
        #expect(!SampleSigner(secret: "other").verify(signed.oracleJSON))
        signed.volume = .int(6)
        #expect(!signer.verify(signed.oracleJSON))
    }

    @Test("the samples ceilometer sent on the bus verify with its secret")
    func wireExample() throws {
        let body = try JSONValue.parse(try fixture("ceilometer-wire-example"))
        let inner = try JSONValue.parse(try #require(body["oslo.message"]?.stringValue))
        guard case .array(let samples)? = inner["payload"]?["samples"] else { Issue.record("no samples"); return }
        #expect(samples.count == 6)
        let signer = SampleSigner(secret: "change this for valid signing")
        for json in samples {
            #expect(signer.verify(json), "\(json["counter_name"]?.stringValue ?? "?")")
            // Decoding and re-encoding keeps the signed content: the signature still verifies.
            let reencoded = try JSONValue.parse(json.jsonText)
            #expect(signer.verify(reencoded))
        }
    }
}

@Suite("Python's str() of values")
struct PythonReprTests {
    @Test("floats print as Python's repr", arguments: [
        (512.0, "512.0"), (1e-05, "1e-05"), (1e16, "1e+16"), (1.2345678901234567e19, "1.2345678901234567e+19"),
        (0.0001, "0.0001"), (1234.5703125, "1234.5703125"), (12345.678901, "12345.678901"), (1e15, "1000000000000000.0"),
        (-2.5, "-2.5"), (0.1, "0.1"), (1.5e-7, "1.5e-07"), (123456789012345.6, "123456789012345.6"), (1e100, "1e+100"),
        (0.0, "0.0"), (100.0, "100.0"), (49.91724881458818, "49.91724881458818"), (9.5e15, "9500000000000000.0"),
        (9.9e-05, "9.9e-05"), (0.00012, "0.00012"), (123456789.0, "123456789.0"), (9007199254740993.0, "9007199254740992.0"),
    ])
    func floats(_ value: Double, _ expected: String) {
        #expect(PythonRepr.float(value) == expected)
        // The bytes the encoder writes (whole numbers straight from their digits).
        var bytes: [UInt8] = []
        PythonRepr.append(value, to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
        let negated: Double = -value
        bytes = []
        PythonRepr.append(negated, to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == PythonRepr.float(negated))
    }

    @Test("integers print with their sign, to both ends of Int64")
    func integers() {
        for value: Int64 in [0, 7, -7, 10, 1_000_000, 123_456_789_000, .max, .min, .min + 1] {
            var bytes: [UInt8] = []
            PythonRepr.append(value, to: &bytes)
            #expect(String(decoding: bytes, as: UTF8.self) == String(value))
        }
    }

    @Test("None, booleans, integers and lists")
    func others() {
        #expect(PythonRepr.str(.null) == "None")
        #expect(PythonRepr.str(.bool(true)) == "True")
        #expect(PythonRepr.str(.int(-7)) == "-7")
        #expect(PythonRepr.str(.array([.string("x"), .string("it's")])) == "[b'x', b\"it's\"]")
    }
}

@Suite("SHA-224 for resource_metadata.host")
struct SHA224Tests {
    @Test("FIPS 180 test vectors")
    func vectors() {
        #expect(SHA224.hexDigest("abc") == "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7")
        #expect(SHA224.hexDigest("") == "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f")
        #expect(SHA224.hexDigest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "75388b16512776cc5dba5da1fd890150b0c6455cb4f58b1952522525")
    }

    @Test("host is sha224(project_id + host) as in ceilometer's example")
    func exampleHost() {
        #expect(SHA224.hexDigest("5b1c7d3e4f5a4b6c8d9e0f1a2b3c4d5e" + "compute-1.example.org")
                == "37ebf4875c928253957886e438cfe6f71adcbda00c79cbac876216e3")
    }
}

@Suite("SHA-256 and HMAC-SHA256, with the CPU's SHA extensions and in portable C", .serialized)
struct SHA256Tests {
    static func hex(_ bytes: [UInt8]) -> String {
        var text: [UInt8] = []
        bytes.withUnsafeBytes { Hex.append($0, to: &text) }
        return String(decoding: text, as: UTF8.self)
    }

    /// Runs `body` once with the SHA extensions (where the CPU has them) and once with the portable code.
    static func onBothPaths(_ body: (String) -> Void) {
        defer { SHA256.usesHardware = true }
        SHA256.usesHardware = true
        if SHA256.usesHardware {
            body("SHA extensions")
        } else {
            print("SHA256Tests: this CPU has no SHA extensions; only the portable code is tested")
        }
        SHA256.usesHardware = false
        #expect(!SHA256.usesHardware)
        body("portable")
    }

    @Test("FIPS 180 SHA-256 and RFC 4231 HMAC-SHA256 vectors")
    func vectors() {
        Self.onBothPaths { path in
            #expect(Self.hex(SHA256.digest([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    "\(path)")
            #expect(Self.hex(SHA256.digest(Array("abc".utf8)))
                    == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "\(path)")
            #expect(Self.hex(SHA256.digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                    == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "\(path)")
            // RFC 4231 test case 2, and test case 6 (a key longer than a block is hashed first).
            #expect(SampleSigner(secret: "Jefe").signature(ofInput: Array("what do ya want for nothing?".utf8))
                    == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "\(path)")
            #expect(Self.hex(HMACSHA256(key: [UInt8](repeating: 0xAA, count: 131)).code(of: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                    == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", "\(path)")
        }
    }

    @Test("messages signed together (1 to 16 at once) get the codes each gets alone, whatever their lengths")
    func batches() {
        var generator = SystemRandomNumberGenerator()
        let messages = stride(from: 0, through: 2_100, by: 7).map { length in
            (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
        }
        let hmac = HMACSHA256(key: Array("a telemetry secret".utf8))
        Self.onBothPaths { path in
            var mismatches = 0, batches = 0
            for count in 1...HMACSHA256.batchSize {
                for _ in 0..<20 {
                    let batch = (0..<count).map { _ in messages.randomElement(using: &generator)! }
                    Self.withBuffers(batch) { buffers in
                        hmac.withCodes(of: buffers) { codes in
                            for (index, message) in batch.enumerated()
                            where Array(codes[32 * index..<32 * (index + 1)]) != hmac.code(of: message) {
                                mismatches += 1
                            }
                            if codes.count != 32 * count { mismatches += 1 }
                        }
                    }
                    batches += 1
                }
            }
            #expect(batches == 320)
            #expect(mismatches == 0, "\(path)")
        }
    }

    /// Calls `body` with the bytes of every array of `arrays`, all valid at once.
    static func withBuffers(_ arrays: [[UInt8]], _ lent: [UnsafeBufferPointer<UInt8>] = [],
                            _ body: ([UnsafeBufferPointer<UInt8>]) -> Void) {
        guard lent.count < arrays.count else { return body(lent) }
        arrays[lent.count].withUnsafeBufferPointer { withBuffers(arrays, lent + [$0], body) }
    }

    @Test("both paths give the same digests and codes for every length across the padding's block edges")
    func pathsAgree() {
        var generator = SystemRandomNumberGenerator()
        let messages = (0...300).map { length in (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        let key = (0..<40).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var results: [String: [String]] = [:]
        Self.onBothPaths { path in
            results[path] = messages.map { Self.hex(SHA256.digest($0)) + Self.hex(HMACSHA256(key: key).code(of: $0)) }
        }
        if let hardware = results["SHA extensions"], let portable = results["portable"] {
            for (length, (a, b)) in zip(hardware, portable).enumerated() { #expect(a == b, "length \(length)") }
        }
        #expect(Set(results["portable"] ?? []).count == messages.count, "every message has its own digest")
    }
}

@Suite("the fast sample signature equals the generic walk")
struct FastSignatureTests {
    @Test("stamped samples, with meters that add and replace metadata keys, verify by the generic walk")
    func stampedSamplesVerify() async throws {
        var domain = snapshot(vcpus: 2, cpu: 5, balloon: BalloonStats(available: 10, unused: 5, rss: 7),
                              nova: SampleTests.nova)
        var disk = DiskStats(name: "vda")
        disk.readBytes = 1
        domain.disks = [disk]
        var nic = InterfaceStats(name: "tap1", mac: "fa:16:3e:00:00:02")   // replaces metadata "name"
        nic.rxBytes = 3
        domain.interfaces = [nic]
        let signer = SampleSigner(secret: "change this for valid signing")
        let cycles = try await runDicts(MeterRegistry.builtIn.meters, [[domain], [domain]],
                                        secret: "change this for valid signing")
        let dicts = cycles.flatMap { $0 }
        #expect(dicts.count > 15)
        for dict in dicts {
            #expect(dict["message_signature"]?.stringValue == signer.signature(of: .object(dict.objectPairsWithoutSignature)),
                    "\(dict["counter_name"]?.stringValue ?? "?")")
        }
    }

    @Test("a signer reused for many samples gives what a fresh signer gives")
    func reusedSigner() throws {
        let shared = SampleSigner(secret: "k")
        for i in 0..<20 {
            let message = JSONValue.object([("counter_volume", .int(Int64(i))), ("x", .string(String(i)))])
            #expect(shared.signature(of: message) == SampleSigner(secret: "k").signature(of: message))
        }
    }
}

extension JSONValue {
    var objectPairsWithoutSignature: [(String, JSONValue)] {
        guard case .object(let pairs) = self else { return [] }
        return pairs.filter { $0.0 != "message_signature" }
    }
}

import Foundation
import PropertyBased
import Testing
import VirtMeterTestSupport
@testable import VirtMeterCore

@Suite("fuzzing the envelope decoder that `tail` uses")
struct EnvelopeFuzzTests {
    static let wireExample = try! Array(fixture("ceilometer-wire-example").utf8)

    @Test("mutated ceilometer messages never crash it; what decodes is well-formed")
    func mutatedMessages() async {
        await propertyCheck(count: 3000, input: Gen.int(in: 0...1_000_000).array(of: 1...12),
                            Gen.uint8(in: 0...255).array(of: 1...12)) { positions, bytes in
            let body = mutate(Self.wireExample, positions: positions, bytes: bytes)
            guard let envelope = try? NotificationEnvelope.decode(body) else { return }
            guard let samples = try? envelope.samples() else { return }
            for decoded in samples {
                if case .object = decoded.json {} else { Issue.record("a sample that is not an object") }
            }
        }
    }

    @Test("random bytes and hostile JSON never crash it")
    func randomBytes() async {
        await propertyCheck(count: 3000, input: Gen.uint8(in: 0...255).array(of: 0...300)) { bytes in
            _ = try? NotificationEnvelope.decode(bytes)
            _ = try? JSONValue.parse(bytes: bytes)
        }
        let deep = Array(("{\"oslo.version\": \"2.0\", \"oslo.message\": \"" + String(repeating: "[", count: 50_000) + "\"}").utf8)
        #expect(throws: (any Error).self) { try NotificationEnvelope.decode(deep).samples() }
    }
}

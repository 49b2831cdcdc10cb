import Foundation
import PropertyBased
import Testing
import VirtMeterTestSupport
@testable import VirtMeterLibvirt

@Suite("fuzzing the nova metadata parser")
struct DomainXMLFuzzTests {
    static let nodeXML = Array((try? String(contentsOfFile: testNodeFile, encoding: .utf8)) ?? "")
    /// The first domain of the node file, as libvirt would hand its XML over.
    static let domainXML: [UInt8] = {
        let text = String(nodeXML)
        guard let start = text.range(of: "<domain type='test'>"), let end = text.range(of: "</domain>") else { return [] }
        return Array(text[start.lowerBound..<end.upperBound].utf8)
    }()

    @Test("mutated domain XML never crashes it, and what parses stays bounded")
    func mutated() async {
        #expect(Self.domainXML.count > 500)
        await propertyCheck(count: 2000, input: Gen.int(in: 0...1_000_000).array(of: 1...10),
                            Gen.uint8(in: 0...255).array(of: 1...10)) { positions, bytes in
            let data = mutate(Self.domainXML, positions: positions, bytes: bytes)
            guard let parsed = try? DomainXML(parsing: String(decoding: data, as: UTF8.self)) else { return }
            #expect((parsed.nova?.displayName?.utf8.count ?? 0) <= DomainXML.maxTextLength)
            #expect(parsed.disks.count <= 64 && parsed.interfaces.count <= 64)
        }
    }
}

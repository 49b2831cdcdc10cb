#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import VirtMeterCore

@Suite("secret files: one reading rule")
struct SecretFileTests {
    /// `bytes` in a fresh temporary file, removed after `body`.
    func withFile(_ bytes: [UInt8], _ body: (String) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-secret-\(UUID())").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    @Test("the line ends at the end go, everything else is the secret's", arguments: [
        ("s3cret\n", "s3cret"), ("s3cret\r\n", "s3cret"), ("s3cret\n\n", "s3cret"), ("s3cret", "s3cret"),
        ("  two words \n", "  two words "), ("\ttab\tin\n", "\ttab\tin"), ("line\none\n", "line\none"), ("\n", ""),
        ("päss\n", "päss"),
    ])
    func trimming(content: String, secret: String) throws {
        try withFile(Array(content.utf8)) { path throws in #expect(try SecretFile.read(path) == secret) }
    }

    @Test("a missing file and bytes that are not UTF-8: a FileError naming the path and what happened")
    func errors() throws {
        let missing = "/nonexistent/virtmeter-secret"
        #expect(throws: FileError("open", path: missing, code: ENOENT)) { try SecretFile.read(missing) }
        try withFile([0x73, 0xFF, 0xFE, 0x0A]) { path in
            #expect(throws: FileError("read", path: path, code: EILSEQ)) { try SecretFile.read(path) }
            do {
                _ = try SecretFile.read(path)
            } catch {
                #expect("\(error)".hasPrefix("read \(path): "))
            }
        }
    }
}

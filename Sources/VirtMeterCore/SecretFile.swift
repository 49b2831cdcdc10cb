#if canImport(Glibc)
import Glibc
#endif

/// A secret kept in a file: the telemetry secret that signs samples, a broker's password. One rule reads every one
/// of them.
package enum SecretFile {
    /// The secret in the file at `path`: the file's bytes as UTF-8 text, without the line ends (LF, CR) at its end
    /// that `echo secret > file` or an editor leaves; everything else, leading or inner spaces included, is the
    /// secret's. Throws `FileError` naming the path (never the content): the errno of `open` or `read`, `EILSEQ` for
    /// bytes that are not UTF-8.
    package static func read(_ path: String) throws(FileError) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError("open", path: path) }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError("read", path: path)
            }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        guard let secret = secret(from: bytes) else { throw FileError("read", path: path, code: EILSEQ) }
        return secret
    }

    /// The secret in a file's `bytes` (see `read`), or nil when they are not UTF-8.
    package static func secret(from bytes: [UInt8]) -> String? {
        var end = bytes.endIndex
        while end > bytes.startIndex, bytes[end - 1] == UInt8(ascii: "\n") || bytes[end - 1] == UInt8(ascii: "\r") {
            end -= 1
        }
        return String(validating: bytes[..<end], as: UTF8.self)
    }
}

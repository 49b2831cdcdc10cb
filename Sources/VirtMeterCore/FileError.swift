#if canImport(Glibc)
import Glibc
#endif

/// A file operation that failed, with the system's errno: "write /var/lib/virtmeter/spool/…: No space left on
/// device" says what happened, where a made-up Cocoa error could only guess.
public struct FileError: Error, Equatable, CustomStringConvertible {
    /// What was attempted (`open`, `write`, `fsync`, ...).
    public let operation: String
    public let path: String
    /// The errno the call set.
    public let code: Int32

    public init(_ operation: String, path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    /// The disk (or the file system's quota) is full.
    public var isNoSpace: Bool { code == ENOSPC || code == EDQUOT }

    /// The system's words for the errno ("No space left on device").
    public var reason: String { String(cString: strerror(code)) }

    public var description: String { "\(operation) \(path): \(reason)" }
}

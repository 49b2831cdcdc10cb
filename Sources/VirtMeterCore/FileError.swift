#if canImport(Glibc)
import Glibc
#endif

/// A file operation that failed, with the system's errno: "write /var/lib/virtmeter/spool/…: No space left on
/// device" says what happened, where a made-up Cocoa error could only guess.
package struct FileError: Error, Equatable, CustomStringConvertible {
    /// What was attempted (`open`, `write`, `fsync`, ...).
    package let operation: String
    package let path: String
    /// The errno the call set.
    package let code: Int32

    package init(_ operation: String, path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    /// The system's words for the errno ("No space left on device").
    package var reason: String { String(cString: strerror(code)) }

    package var description: String { "\(operation) \(path): \(reason)" }
}

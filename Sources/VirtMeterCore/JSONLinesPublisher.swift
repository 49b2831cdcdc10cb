import Foundation

/// Writes samples as JSON lines (one sample dict a line, ready for `jq`) to stdout or appends them to a file,
/// one write per batch.
package final class JSONLinesPublisher: Publisher {
    private let handle: FileHandle
    private let closesHandle: Bool

    /// Samples on stdout.
    package static var standardOutput: JSONLinesPublisher {
        JSONLinesPublisher(handle: .standardOutput, closesHandle: false)
    }

    private init(handle: FileHandle, closesHandle: Bool) {
        self.handle = handle
        self.closesHandle = closesHandle
    }

    /// Samples appended to the file at `path`, created if missing, readable by its owner only (samples carry
    /// tenant ids and names). Throws `FileError` when it cannot be opened for appending.
    package convenience init(appendingTo path: String) throws(FileError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw FileError("open", path: path) }
        self.init(handle: FileHandle(fileDescriptor: descriptor, closeOnDealloc: true), closesHandle: true)
    }

    package func publish(_ records: SampleRecords) async throws {
        try handle.write(contentsOf: records.jsonLines)
    }

    package func close() async {
        if closesHandle { try? handle.close() }
    }
}

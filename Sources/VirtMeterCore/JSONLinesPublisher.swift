import Foundation

/// Writes samples as JSON lines (one sample dict a line, ready for `jq`) to stdout or appends them to a file,
/// one write per batch.
public final class JSONLinesPublisher: Publisher {
    private let handle: FileHandle
    private let closesHandle: Bool

    /// Samples on stdout.
    public static var standardOutput: JSONLinesPublisher {
        JSONLinesPublisher(handle: .standardOutput, closesHandle: false)
    }

    private init(handle: FileHandle, closesHandle: Bool) {
        self.handle = handle
        self.closesHandle = closesHandle
    }

    /// Samples appended to the file at `path`, created if missing. Throws when it cannot be opened for writing.
    public convenience init(appendingTo path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
            }
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        self.init(handle: handle, closesHandle: true)
    }

    public func publish(_ samples: [Sample]) async throws {
        var text = ""
        for sample in samples {
            sample.json.write(to: &text)
            text += "\n"
        }
        try handle.write(contentsOf: Data(text.utf8))
    }

    public func close() async {
        if closesHandle { try? handle.close() }
    }
}

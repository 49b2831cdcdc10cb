#if canImport(Glibc)
import Glibc
#endif
import Foundation
import VirtMeterCore

/// A child process whose stdout and stderr go to files in `directory`, which a test reads while it runs (a pipe
/// could fill up, or be kept open by a daemon). One let go of still running is stopped (SIGTERM, then SIGKILL after
/// 15 s), so a test that failed half-way leaves nothing running.
package final class LoggedProcess {
    package let process = Process()
    package let directory: URL
    private let out: URL, err: URL
    private let removesDirectory: Bool

    /// Starts `executable`; with `removesDirectory`, `directory` is deleted once the process is gone.
    package init(_ executable: String, _ arguments: [String], directory: URL, environment: [String: String] = [:],
                 removesDirectory: Bool = false) throws {
        self.directory = directory
        self.removesDirectory = removesDirectory
        out = directory.appendingPathComponent("out")
        err = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning {
            process.terminate()
            let deadline = Date() + 15
            while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        if removesDirectory { try? FileManager.default.removeItem(at: directory) }
    }

    package var stdout: String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
    package var stderr: String { (try? String(contentsOf: err, encoding: .utf8)) ?? "" }

    /// The lines of stdout that are JSON: the samples of `virtmeter run --publish stdout`.
    package func samples() -> [JSONValue] {
        stdout.split(separator: "\n").compactMap { try? JSONValue.parse(String($0)) }
    }

    /// The lines of stderr that contain every one of `words`.
    package func log(_ words: String...) -> [Substring] {
        stderr.split(separator: "\n").filter { line in words.allSatisfy(line.contains) }
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    package func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

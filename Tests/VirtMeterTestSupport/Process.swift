import Foundation

/// Runs a program to its end; stdin is empty, stdout and stderr are read concurrently.
package func runProgram(_ executable: String, _ arguments: [String], environment: [String: String] = [:])
    throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { $1 }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let collected = ErrorCollector(err.fileHandleForReading)
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = collected.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

/// Reads a pipe to its end on a thread of its own.
package final class ErrorCollector: @unchecked Sendable {
    // Written once by the reading thread before the semaphore is signalled, read after waiting on it.
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    package init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    package func wait() -> Data {
        done.wait()
        return data
    }
}

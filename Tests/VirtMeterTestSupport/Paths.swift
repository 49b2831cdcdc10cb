#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The repository this test runs from.
package let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The repository's test-driver node (etc/virtmeter/test-node.xml) and its libvirt URI.
package let testNodeFile = repositoryRoot.appendingPathComponent("etc/virtmeter/test-node.xml").path
package let testNodeURI = "test://" + testNodeFile

/// The `virtmeter` binary built next to the test bundle (whatever the build's scratch path).
package let virtmeterBinary: String = {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    while directory.path != "/" {
        let candidate = directory.appendingPathComponent("virtmeter").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        directory.deleteLastPathComponent()
    }
    return repositoryRoot.appendingPathComponent(".build/debug/virtmeter").path
}()

/// A new, empty directory of its own under the system's temporary directory.
package func temporaryDirectory() throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

/// Runs blocking work (child processes, long C calls) on a thread of its own: blocking the 2 threads of Swift's
/// cooperative pool would stall the timing tests that run beside it.
package func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterCore

/// `virtmeter run` against the kit's libvirtd while libvirtd restarts: polling resumes without restarting the
/// agent. Run after the other guest tests (scripts/test-guests does), since it takes libvirtd away for a moment.
@Suite("libvirtd restarted under a running agent")
struct LibvirtRestartTests {
    @Test("the connection lost and back: logged once each way, samples again without restarting the agent")
    func reconnect() async throws {
        let kit = try GuestKit.fromEnvironment()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-restart-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let polling = directory.appendingPathComponent("polling.yaml")
        try "sources:\n  - name: s\n    interval: 1\n    meters: [vcpus, memory]\n".write(to: polling, atomically: true,
                                                                                   encoding: .utf8)
        let out = directory.appendingPathComponent("out"), err = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: virtmeterBinary)
        agent.arguments = ["run", "--connect", kit.uri, "--polling", polling.path, "--publish", "stdout",
                           "--state-dir", directory.appendingPathComponent("state").path, "--log-level", "debug"]
        agent.standardOutput = try FileHandle(forWritingTo: out)
        agent.standardError = try FileHandle(forWritingTo: err)
        agent.standardInput = FileHandle.nullDevice
        try agent.run()
        defer { if agent.isRunning { agent.terminate() } }
        func lines(_ file: URL) -> [Substring] {
            ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n")
        }

        try await Task.sleep(for: .seconds(4))
        let before = lines(out).count
        #expect(before > 0, "samples before the restart")
        let start = SampleClock.monotonic()
        // Through the shell and a file, not a pipe: the daemon libvirtd becomes may hold on to what it inherits.
        let kitLog = directory.appendingPathComponent("kit.log").path
        let status = system("'\(kit.script)' restart-libvirtd >'\(kitLog)' 2>&1 </dev/null")
        #expect(status == 0, "kit restart-libvirtd: \((try? String(contentsOfFile: kitLog, encoding: .utf8)) ?? "")")
        while !lines(err).contains(where: { $0.contains("libvirt is back") }), SampleClock.monotonic() - start < 90 {
            try await Task.sleep(for: .milliseconds(200))
        }
        let afterBack = lines(out).count
        try await Task.sleep(for: .seconds(4))
        agent.terminate()
        agent.waitUntilExit()
        let log = lines(err)
        #expect(agent.terminationStatus == 0)
        #expect(log.filter { $0.contains("libvirt unreachable") }.count == 1, "the loss is logged once")
        #expect(log.filter { $0.contains("libvirt is back") }.count == 1, "the return is logged once")
        #expect(lines(out).count > afterBack, "samples again after libvirtd came back, agent not restarted")
        figure("polling resumed after a libvirtd restart", expected: "without restarting the agent",
               measured: "back \(format(SampleClock.monotonic() - start, 1)) s after the restart began")
    }
}

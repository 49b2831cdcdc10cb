import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterAMQP

/// A password with `/`, `@`, `:` and `%` in an AMQP URL, written raw (a malformed URL) or percent-encoded (a
/// valid one, to a broker that is not there): no piece of it appears in any output, at any log level.
@Suite("AMQP URL passwords never shown")
struct SecretInURLTests {
    /// Every piece of the password between its special characters contains this.
    static let marker = "PWSECRET"
    static let password = "\(marker)1/\(marker)2@\(marker)3:\(marker)4%\(marker)5"
    static let encoded = "\(marker)1%2F\(marker)2%40\(marker)3%3A\(marker)4%25\(marker)5"
    /// Nothing listens on port 1 of loopback.
    static let urls = [
        "amqp://user:\(password)@127.0.0.1:1/",
        "amqp://user:\(password)@127.0.0.1/",
        "amqps://user:\(password)@[::1]:1/vhost",
        "amqp://user:\(password)",
        "amqp://user:\(encoded)@127.0.0.1:1/",
        "amqp://user:\(encoded)@127.0.0.1:99999/",
        "amqp://user:\(encoded)%zz@127.0.0.1:1/",
        "amqx://user:\(encoded)@127.0.0.1:1/",
    ]

    @Test("parse errors name the part that is wrong, never the URL")
    func parseErrors() {
        for url in Self.urls {
            do {
                let parsed = try AMQPURL(url)
                #expect(!parsed.description.contains(Self.marker))
            } catch {
                #expect(!"\(error)".contains(Self.marker), "\(error)")
                #expect("\(error)".contains("URL"))
            }
        }
        #expect(throws: AMQPError.self) { try AMQPURL("amqp://user:\(Self.password)@127.0.0.1:1/") }
        #expect((try? AMQPURL("amqp://user:\(Self.encoded)@127.0.0.1:1/"))?.password == Self.password)
    }

    @Test("poll, run and tail at trace level print no piece of the password")
    func commands() async throws {
        try await offThePool { try self.runCommands() }
    }

    func runCommands() throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-secret-url-\(getpid())")
        defer { try? FileManager.default.removeItem(at: state) }
        for url in Self.urls {
            let poll = try virtmeter(["poll", "--connect", "test:///default", "--publish", url,
                                                 "--log-level", "trace"])
            #expect(poll.status != 0)
            #expect(!(poll.stdout + poll.stderr).contains(Self.marker), "poll: \(poll.stderr)")
            let tail = try virtmeter(["tail", url, "--count", "1"])
            #expect(tail.status != 0)
            #expect(!(tail.stdout + tail.stderr).contains(Self.marker), "tail: \(tail.stderr)")
            // `run` (which starts even when the broker is unreachable) with a raw and an encoded URL: from the command
            // line, the configuration file and the environment.
            guard url == Self.urls[0] || url == Self.urls[4] else { continue }
            // A short shutdown_timeout: with the broker unreachable, SIGTERM would wait that long for delivery.
            try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
            let base = state.appendingPathComponent("base.yaml")
            try "shutdown_timeout: 0.5\n".write(to: base, atomically: true, encoding: .utf8)
            let agent = try runFor(seconds: 1.2, ["run", "--config", base.path, "--connect", "test:///default",
                                                  "--publish", url, "--state-dir", state.path, "--log-level", "trace"])
            #expect(!agent.isEmpty && !agent.contains(Self.marker), "run: \(agent)")
            let config = state.appendingPathComponent("virtmeter.yaml")
            try "shutdown_timeout: 0.5\npublishers:\n  - type: amqp\n    url: '\(url)'\n"
                .write(to: config, atomically: true, encoding: .utf8)
            let configured = try runFor(seconds: 1.2, ["run", "--config", config.path, "--connect", "test:///default",
                                                       "--state-dir", state.path, "--log-level", "trace"])
            #expect(!configured.isEmpty && !configured.contains(Self.marker), "run --config: \(configured)")
            let fromEnvironment = try runFor(seconds: 1.2, ["run", "--config", base.path, "--connect",
                                                            "test:///default", "--state-dir", state.path,
                                                            "--log-level", "trace"],
                                             environment: ["VIRTMETER_AMQP_URL": url])
            #expect(!fromEnvironment.isEmpty && !fromEnvironment.contains(Self.marker),
                    "run with VIRTMETER_AMQP_URL: \(fromEnvironment)")
        }
    }

    /// Runs `virtmeter` with `arguments`, sends SIGTERM after `seconds` if it still runs; returns stdout + stderr.
    func runFor(seconds: Double, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: virtmeterBinary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-secret-\(getpid()).out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        try handle.close()
        return (try? String(contentsOf: output, encoding: .utf8)) ?? ""
    }
}

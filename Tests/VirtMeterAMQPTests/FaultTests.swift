import Foundation
import Testing
import VirtMeterAMQP
import VirtMeterCore

/// A RabbitMQ of the test's own (its own folder and port), so killing it disturbs no other test.
struct OwnBroker {
    let directory: String
    let port: Int
    var url: AMQPURL { try! AMQPURL("amqp://guest:guest@127.0.0.1:\(port)/") }
    static let script = amqpRepositoryRoot.appendingPathComponent("scripts/rabbitmq-test-broker").path

    /// Starts a broker on a free port (the port and port + 20000 both free).
    static func start() throws -> OwnBroker {
        var port = Int.random(in: 6000...6900)
        while !isFree(port) || !isFree(port + 20000) { port += 1 }
        let broker = OwnBroker(directory: NSTemporaryDirectory() + uniqueName("vmtest-broker"), port: port)
        try broker.startAgain()
        return broker
    }

    static func isFree(_ port: Int) -> Bool {
        shell("exec 3<>/dev/tcp/127.0.0.1/\(port) 2>/dev/null") != 0
    }

    /// Starts (or restarts) the broker in its folder: durable queues and persistent messages survive.
    func startAgain() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard shell("'\(Self.script)' start '\(directory)' \(port) >'\(directory)/script.log' 2>&1") == 0 else {
            let log = (try? String(contentsOfFile: directory + "/script.log", encoding: .utf8)) ?? ""
            throw KitFailure("broker did not start: \(log)")
        }
    }

    /// `kill -9` of the broker's Erlang VM.
    func kill9() throws {
        let pid = try String(contentsOfFile: directory + "/beam.pid", encoding: .utf8)
        _ = kill(pid_t(pid.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, SIGKILL)
        while !Self.isFree(port) { Thread.sleep(forTimeInterval: 0.1) }
    }

    func ctl(_ arguments: [String]) throws {
        let words = arguments.map { "'\($0)'" }.joined(separator: " ")
        guard shell("'\(Self.script)' ctl '\(directory)' \(words) >>'\(directory)/script.log' 2>&1") == 0 else {
            throw KitFailure("rabbitmqctl \(arguments) failed: see \(directory)/script.log")
        }
    }

    /// Stops the broker and removes its folder.
    func stop() {
        _ = shell("'\(Self.script)' stop '\(directory)' >/dev/null 2>&1")
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Runs a bash command line and returns its exit status. The broker's scripts start daemons that outlive them,
/// which Foundation's Process does not always see end; `system` waits for the shell alone.
func shell(_ command: String) -> Int32 {
    let status = system("/bin/bash -c \"\(command.replacingOccurrences(of: "\"", with: "\\\""))\" </dev/null")
    return status == -1 ? -1 : (status >> 8) & 0xFF
}

struct KitFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `virtmeter run` polling the test driver every second into a durable exchange on `broker`, and into a file:
/// the file holds every sample the agent produced (the file publisher never fails), so it is the reference.
struct FaultAgent {
    let directory: URL
    let topic = uniqueName("vmtest-fault")
    let exchange = uniqueName("vmtest-fault-ex")
    var process: Process?

    init(broker: OwnBroker) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("vmtest-agent"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try "sources:\n  - name: every_second\n    interval: 1\n    meters: [cpu, vcpus]\n"
            .write(to: directory.appendingPathComponent("polling.yaml"), atomically: true, encoding: .utf8)
        try """
            libvirt_uri: \(amqpNodeURI)
            polling_file: \(directory.path)/polling.yaml
            state_dir: \(directory.path)/state
            log_level: debug
            retry_initial: 0.2
            retry_max: 2
            shutdown_timeout: 20
            publishers:
              - type: amqp
                url: amqp://guest@127.0.0.1:\(broker.port)/
                exchange: \(exchange)
                exchange_durable: true
                topic: \(topic)
                heartbeat: 5
              - type: file
                path: \(directory.path)/produced.jsonl
            """.write(to: directory.appendingPathComponent("virtmeter.yaml"), atomically: true, encoding: .utf8)
    }

    var log: String { (try? String(contentsOf: directory.appendingPathComponent("agent.log"), encoding: .utf8)) ?? "" }

    /// Starts the agent (again), appending to its log.
    mutating func start() throws {
        let logFile = directory.appendingPathComponent("agent.log")
        if !FileManager.default.fileExists(atPath: logFile.path) {
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: logFile)
        try handle.seekToEnd()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: amqpVirtmeterBinary)
        process.arguments = ["run", "--config", directory.appendingPathComponent("virtmeter.yaml").path]
        process.environment = ProcessInfo.processInfo.environment.merging(["VIRTMETER_AMQP_PASSWORD": "guest"]) { $1 }
        process.standardError = handle
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
    }

    /// SIGTERM and the exit status.
    func stop() -> Int32 {
        guard let process else { return -1 }
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    func kill9() {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits (up to `timeout` s) until the log contains `text` `count` times; returns the seconds it took.
    func waitForLog(_ text: String, count: Int = 1, timeout: Double) async throws -> Double {
        let start = Clock.monotonic()
        while Clock.monotonic() - start < timeout {
            if log.components(separatedBy: text).count - 1 >= count { return Clock.monotonic() - start }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw KitFailure("no '\(text)' in the agent's log after \(timeout) s:\n\(log.suffix(3000))")
    }

    /// The message ids of every sample the agent produced.
    func produced() throws -> Set<String> {
        let text = try String(contentsOf: directory.appendingPathComponent("produced.jsonl"), encoding: .utf8)
        return Set(try text.split(separator: "\n").compactMap { try JSONValue.parse(String($0))["message_id"]?.stringValue })
    }

    /// Everything on the agent's queue: message ids in arrival order.
    func received(from broker: OwnBroker) async throws -> [String] {
        var ids: [String] = []
        for delivery in try await drain(broker.url, queue: topic + ".sample", quiet: 3) {
            ids += try NotificationEnvelope.decode(delivery.body).samples().compactMap { $0.sample?.messageID }
        }
        return ids
    }

    /// Compares produced and received by message id; prints the figures; fails on any loss.
    func check(_ name: String, broker: OwnBroker) async throws {
        let produced = try produced()
        let received = try await received(from: broker)
        let unique = Set(received)
        let lost = produced.subtracting(unique)
        print("FIGURE fault \(name): produced \(produced.count), received \(received.count) "
              + "(\(unique.count) distinct), lost \(lost.count), duplicated \(received.count - unique.count)")
        #expect(produced.count > 0)
        #expect(lost.isEmpty, "\(lost.count) samples lost in '\(name)', e.g. \(lost.prefix(3))")
        #expect(unique.isSubset(of: produced))
    }
}

@Suite("no sample lost: broker and agent faults (each with a broker of its own)", .serialized)
struct FaultTests {
    @Test("the broker killed with kill -9 for 15 s while the agent polls every second: 0 lost")
    func brokerKilled() async throws {
        _ = try TestBroker.url()   // the fault suite runs where the AMQP suite runs: scripts/test-amqp
        let broker = try OwnBroker.start()
        defer { broker.stop() }
        var agent = try FaultAgent(broker: broker)
        try agent.start()
        try await Task.sleep(for: .seconds(3))
        try broker.kill9()
        _ = try await agent.waitForLog("publishing failed", timeout: 10)
        try await Task.sleep(for: .seconds(15))
        try broker.startAgain()
        let recovery = try await agent.waitForLog("publishing recovered", timeout: 60)
        print("FIGURE fault broker kill -9 15 s: first delivery \(String(format: "%.1f", recovery)) s after the broker was back")
        try await Task.sleep(for: .seconds(3))
        #expect(agent.stop() == 0)
        #expect(agent.log.components(separatedBy: "publishing failed").count - 1 == 1, "the outage is logged once")
        try await agent.check("broker kill -9 for 15 s", broker: broker)
    }

    @Test("close_all_connections, then stop_app and start_app during a run: 0 lost")
    func brokerConnectionsClosed() async throws {
        _ = try TestBroker.url()
        let broker = try OwnBroker.start()
        defer { broker.stop() }
        var agent = try FaultAgent(broker: broker)
        try agent.start()
        try await Task.sleep(for: .seconds(3))
        try broker.ctl(["close_all_connections", "virtmeter fault test"])
        try await Task.sleep(for: .seconds(3))
        try broker.ctl(["stop_app"])
        try await Task.sleep(for: .seconds(4))
        try broker.ctl(["start_app"])
        _ = try await agent.waitForLog("publishing recovered", timeout: 60)
        try await Task.sleep(for: .seconds(3))
        #expect(agent.stop() == 0)
        try await agent.check("close_all_connections + stop_app/start_app", broker: broker)
    }

    @Test("the agent killed with kill -9 while the broker is down, restarted once it is back: the spool drains, 0 lost")
    func agentKilledDuringOutage() async throws {
        _ = try TestBroker.url()
        let broker = try OwnBroker.start()
        defer { broker.stop() }
        var agent = try FaultAgent(broker: broker)
        try agent.start()
        try await Task.sleep(for: .seconds(2))
        try broker.kill9()
        try await Task.sleep(for: .seconds(4))
        agent.kill9()
        try broker.startAgain()
        let restarted = Clock.monotonic()
        try agent.start()
        _ = try await agent.waitForLog("spool recovered", timeout: 20)
        _ = try await agent.waitForLog("cycle done", count: 10, timeout: 30)
        print("FIGURE fault agent kill -9: restarted and spool replayed within "
              + "\(String(format: "%.1f", Clock.monotonic() - restarted)) s")
        #expect(agent.stop() == 0)
        try await agent.check("agent kill -9 during a broker outage", broker: broker)
    }
}

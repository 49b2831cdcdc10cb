import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterAMQP
import VirtMeterCore

/// A RabbitMQ of the test's own (its own folder and port), so killing it disturbs no other test.
struct OwnBroker {
    let directory: String
    let port: Int
    var url: AMQPURL { try! AMQPURL("amqp://guest:guest@127.0.0.1:\(port)/") }
    static let script = repositoryRoot.appendingPathComponent("scripts/rabbitmq-test-broker").path

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

/// `virtmeter run` polling the test driver every second into a durable exchange on `broker`, and into a file (a
/// second view of what the spool delivered: nothing foreign may reach the broker). What it produced is counted from
/// its own per-cycle log lines (`producedCount`).
struct FaultAgent {
    let directory: URL
    let topic = uniqueName("vmtest-fault")
    let exchange = uniqueName("vmtest-fault-ex")
    var process: Process?
    /// The broker password the agent gets from its environment.
    let password: String

    /// `meters` are polled every second; `shutdownTimeout` is the agent's.
    init(broker: OwnBroker, meters: String = "[cpu, vcpus]", shutdownTimeout: Int = 20) throws {
        try self.init(url: "amqp://guest@127.0.0.1:\(broker.port)/", meters: meters, shutdownTimeout: shutdownTimeout)
    }

    /// An agent publishing to `url` (one node or a list), with `amqpSettings` (YAML lines of the AMQP publisher) and
    /// `password` in `VIRTMETER_AMQP_PASSWORD`.
    init(url: String, amqpSettings: [String] = ["exchange_durable: true"], password: String = "guest",
         meters: String = "[cpu, vcpus]", shutdownTimeout: Int = 20) throws {
        self.password = password
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("vmtest-agent"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try "sources:\n  - name: every_second\n    interval: 1\n    meters: \(meters)\n"
            .write(to: directory.appendingPathComponent("polling.yaml"), atomically: true, encoding: .utf8)
        try """
            libvirt_uri: \(amqpNodeURI)
            polling_file: \(directory.path)/polling.yaml
            state_dir: \(directory.path)/state
            log_level: debug
            retry_initial: 0.2
            retry_max: 2
            shutdown_timeout: \(shutdownTimeout)
            publishers:
              - type: amqp
                url: \(url)
                exchange: \(exchange)
            \(amqpSettings.map { "    " + $0 + "\n" }.joined())    topic: \(topic)
                heartbeat: 5
              - type: file
                path: \(directory.path)/produced.jsonl
            """.write(to: directory.appendingPathComponent("virtmeter.yaml"), atomically: true, encoding: .utf8)
    }

    var log: String { (try? String(contentsOf: directory.appendingPathComponent("agent.log"), encoding: .utf8)) ?? "" }

    /// How many lines of the log contain `text`.
    func logged(_ text: String) -> Int { log.split(separator: "\n").filter { $0.contains(text) }.count }

    /// The value of `key=` in the last log line containing `text`.
    func loggedValue(_ text: String, _ key: String) -> Int? {
        log.split(separator: "\n").last { $0.contains(text) }?.split(separator: " ")
            .first { $0.hasPrefix(key + "=") }.flatMap { Int($0.dropFirst(key.count + 1)) }
    }

    /// Starts the agent (again), appending to its log.
    mutating func start() throws {
        let logFile = directory.appendingPathComponent("agent.log")
        if !FileManager.default.fileExists(atPath: logFile.path) {
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: logFile)
        try handle.seekToEnd()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: virtmeterBinary)
        process.arguments = ["run", "--config", directory.appendingPathComponent("virtmeter.yaml").path]
        process.environment = ProcessInfo.processInfo.environment.merging(["VIRTMETER_AMQP_PASSWORD": password]) { $1 }
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

    /// `kill -9` of the agent if it still runs: a test that stopped half-way leaves no process behind.
    func ensureStopped() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func kill9() {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits (up to `timeout` s) until the log contains `text` `count` times; returns the seconds it took.
    func waitForLog(_ text: String, count: Int = 1, timeout: Double) async throws -> Double {
        let start = SampleClock.monotonic()
        while SampleClock.monotonic() - start < timeout {
            if log.components(separatedBy: text).count - 1 >= count { return SampleClock.monotonic() - start }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw KitFailure("no '\(text)' in the agent's log after \(timeout) s:\n\(log.suffix(3000))")
    }

    /// The samples the agent produced, by its own count: the sum of its cycles' `virtmeter.poll.samples` (logged once
    /// a cycle's samples are in the spool). Counted where they are made, so a record the spool dropped shows up as
    /// lost.
    var producedCount: Int {
        log.split(separator: "\n").filter { $0.contains("cycle done") }.reduce(0) { total, line in
            total + (line.split(separator: " ").first { $0.hasPrefix("virtmeter.poll.samples=") }
                .flatMap { Int($0.dropFirst("virtmeter.poll.samples=".count)) } ?? 0)
        }
    }

    /// The message ids of every sample the file publisher wrote (a second view, fed by the same spool).
    func produced() throws -> Set<String> {
        let text = try String(contentsOf: directory.appendingPathComponent("produced.jsonl"), encoding: .utf8)
        return Set(try text.split(separator: "\n").compactMap {
            try JSONValue.parse(String($0))["message_id"]?.stringValue
        })
    }

    /// Everything on the agent's queue: message ids in arrival order.
    func received(from broker: OwnBroker) async throws -> [String] {
        try await received(from: broker.url)
    }

    /// Everything on the agent's queue on the broker (node) at `url`: message ids in arrival order.
    func received(from url: AMQPURL) async throws -> [String] {
        var ids: [String] = []
        for delivery in try await drain(url, queue: topic + ".sample", quiet: 3) {
            ids += try NotificationEnvelope.decode(delivery.body).samples().compactMap { $0.sample?.messageID }
        }
        return ids
    }

    /// Compares what the agent produced (its own per-cycle counts) with what reached the broker (distinct message
    /// ids); prints the figures; fails on any loss beyond `allowedLoss` (samples the agent itself counted as lost).
    /// The file publisher's ids check that nothing foreign arrived. Returns the received message ids.
    @discardableResult
    func check(_ name: String, broker: OwnBroker, allowedLoss: Int = 0) async throws -> [String] {
        try await check(name, url: broker.url, allowedLoss: allowedLoss)
    }

    /// `check` against the broker (node) at `url`.
    @discardableResult
    func check(_ name: String, url: AMQPURL, allowedLoss: Int = 0) async throws -> [String] {
        let produced = producedCount
        let received = try await received(from: url)
        let unique = Set(received)
        let lost = max(0, produced - unique.count)
        print("FIGURE fault \(name): produced \(produced) (counted by the agent's cycles), received "
              + "\(received.count) (\(unique.count) distinct), lost \(lost), "
              + "duplicated \(received.count - unique.count)")
        #expect(produced > 0)
        #expect(lost == allowedLoss, "\(lost) samples lost in '\(name)', \(allowedLoss) counted by the agent")
        #expect(unique.isSubset(of: try self.produced()))
        return received
    }
}

@Suite("no sample lost: broker and agent faults (each with a broker of its own)", .serialized)
struct FaultTests {
    /// Starts a broker of its own and an agent publishing to it, runs `fault`, then stops the agent (it must exit 0)
    /// and checks that every sample it produced reached the broker (`check`). The broker is stopped after.
    private func run(_ name: String, shutdownTimeout: Int = 20,
                     _ fault: (OwnBroker, inout FaultAgent) async throws -> Void) async throws {
        _ = try TestBroker.url()   // the fault suite runs where the AMQP suite runs: scripts/test-amqp
        let broker = try OwnBroker.start()
        defer { broker.stop() }
        var agent = try FaultAgent(broker: broker, shutdownTimeout: shutdownTimeout)
        try agent.start()
        try await fault(broker, &agent)
        #expect(agent.stop() == 0)
        try await agent.check(name, broker: broker)
    }

    @Test("the broker killed with kill -9 for 15 s while the agent polls every second: 0 lost")
    func brokerKilled() async throws {
        try await run("broker kill -9 for 15 s") { broker, agent in
            try await Task.sleep(for: .seconds(3))
            try broker.kill9()
            _ = try await agent.waitForLog("publishing failed", timeout: 10)
            try await Task.sleep(for: .seconds(15))
            try broker.startAgain()
            let recovery = try await agent.waitForLog("publishing recovered", timeout: 60)
            print("FIGURE fault broker kill -9 15 s: first delivery \(String(format: "%.1f", recovery)) s after the "
                  + "broker was back")
            try await Task.sleep(for: .seconds(3))
            #expect(agent.log.components(separatedBy: "publishing failed").count - 1 == 1, "the outage is logged once")
        }
    }

    @Test("close_all_connections, then stop_app and start_app during a run: 0 lost")
    func brokerConnectionsClosed() async throws {
        try await run("close_all_connections + stop_app/start_app") { broker, agent in
            try await Task.sleep(for: .seconds(3))
            try broker.ctl(["close_all_connections", "virtmeter fault test"])
            try await Task.sleep(for: .seconds(3))
            try broker.ctl(["stop_app"])
            try await Task.sleep(for: .seconds(4))
            try broker.ctl(["start_app"])
            _ = try await agent.waitForLog("publishing recovered", timeout: 60)
            try await Task.sleep(for: .seconds(3))
        }
    }

    @Test("the agent killed with kill -9 while the broker is down, restarted once it is back: the spool drains, 0 lost")
    func agentKilledDuringOutage() async throws {
        try await run("agent kill -9 during a broker outage") { broker, agent in
            try await Task.sleep(for: .seconds(2))
            try broker.kill9()
            try await Task.sleep(for: .seconds(4))
            agent.kill9()
            try broker.startAgain()
            let restarted = SampleClock.monotonic()
            try agent.start()
            _ = try await agent.waitForLog("spool recovered", timeout: 20)
            _ = try await agent.waitForLog("cycle done", count: 10, timeout: 30)
            print("FIGURE fault agent kill -9: restarted and spool replayed within "
                  + "\(String(format: "%.1f", SampleClock.monotonic() - restarted)) s")
        }
    }

    @Test("the broker's memory alarm for 20 s: publishing waits (logged once each way), polling goes on, 0 lost")
    func memoryAlarm() async throws {
        try await run("memory alarm for 20 s") { broker, agent in
            try await Task.sleep(for: .seconds(3))
            try broker.ctl(["set_vm_memory_high_watermark", "0.000001"])
            _ = try await agent.waitForLog("the broker blocks publishing", timeout: 15)
            let cyclesBefore = agent.logged("cycle done")
            try await Task.sleep(for: .seconds(20))
            #expect(agent.logged("cycle done") >= cyclesBefore + 17, "polling went on during the alarm")
            try broker.ctl(["set_vm_memory_high_watermark", "0.4"])
            _ = try await agent.waitForLog("the broker takes samples again", timeout: 30)
            try await Task.sleep(for: .seconds(3))
            #expect(agent.logged("the broker blocks publishing") == 1
                    && agent.logged("the broker takes samples again") == 1)
            let blocked = agent.log.split(separator: "\n").last { $0.contains("the broker takes samples again") } ?? ""
            let seconds = blocked.split(separator: " ").first { $0.contains("blocked_seconds") } ?? ""
            print("FIGURE fault memory alarm: \(seconds)")
        }
    }

    @Test("SIGTERM while the broker blocks publishing exits 0 within shutdown_timeout; the next start delivers the rest")
    func shutdownDuringAlarm() async throws {
        try await run("SIGTERM during a memory alarm, then a restart", shutdownTimeout: 4) { broker, agent in
            try await Task.sleep(for: .seconds(2))
            try broker.ctl(["set_vm_memory_high_watermark", "0.000001"])
            _ = try await agent.waitForLog("the broker blocks publishing", timeout: 15)
            try await Task.sleep(for: .seconds(3))
            let stopping = SampleClock.monotonic()
            let status = agent.stop()
            let took = SampleClock.monotonic() - stopping
            print("FIGURE fault SIGTERM during a memory alarm: exit \(status) after \(String(format: "%.1f", took)) s "
                  + "(shutdown_timeout 4)")
            #expect(status == 0 && took < 5, "exit \(status) after \(took) s")
            #expect(agent.logged("virtmeter stopped") == 1 && !agent.log.contains("Fatal error"))
            try broker.ctl(["set_vm_memory_high_watermark", "0.4"])
            try agent.start()
            _ = try await agent.waitForLog("spool recovered", timeout: 20)
            _ = try await agent.waitForLog("cycle done", count: agent.logged("cycle done") + 3, timeout: 30)
        }
    }

    @Test("a second agent on the same state directory is refused with one line; the first loses nothing")
    func secondAgent() async throws {
        try await run("a second agent refused") { broker, agent in
            _ = try await agent.waitForLog("cycle done", count: 2, timeout: 20)
            let second = try runProgram(virtmeterBinary, ["run", "--config", agent.directory.appendingPathComponent(
                "virtmeter.yaml").path], environment: ["VIRTMETER_AMQP_PASSWORD": "guest"])
            let pid = try #require(agent.process?.processIdentifier)
            #expect(second.status == 1)
            #expect(second.stderr.contains("virtmeter: spool: \(agent.directory.path)/state/spool is in use by another "
                                           + "virtmeter (pid \(pid))"), "\(second.stderr)")
            try await Task.sleep(for: .seconds(3))
        }
    }

    @Test("state on a 1 MiB tmpfs, broker down: loss logged once, then everything spooled is delivered, nothing resent")
    func fullDisk() async throws {
        _ = try TestBroker.url()
        guard getuid() == 0 else {
            Issue.record("this test mounts a 1 MiB tmpfs and needs root (CI and scripts/test run as root)")
            return
        }
        let broker = try OwnBroker.start()
        defer { broker.stop() }
        var agent = try FaultAgent(broker: broker, meters: "['*']")
        let state = agent.directory.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        guard shell("mount -t tmpfs -o size=1m virtmeter-test '\(state.path)'") == 0 else {
            Issue.record("cannot mount a tmpfs on \(state.path)")
            return
        }
        defer { _ = shell("umount '\(state.path)'") }
        try agent.start()
        try await Task.sleep(for: .seconds(2))
        try broker.kill9()
        _ = try await agent.waitForLog("spool cannot write", timeout: 60)
        try await Task.sleep(for: .seconds(5))
        #expect(agent.process?.isRunning == true)
        try broker.startAgain()
        _ = try await agent.waitForLog("spool writing again", timeout: 60)
        let cycles = agent.logged("cycle done")
        _ = try await agent.waitForLog("cycle done", count: cycles + 5, timeout: 30)
        try await Task.sleep(for: .seconds(2))
        #expect(agent.stop() == 0)
        #expect(agent.logged("spool cannot write") == 1 && agent.logged("spool writing again") == 1)
        let lost = try #require(agent.loggedValue("virtmeter stopped", "virtmeter.agent.samples_lost"))
        #expect(lost > 0 && agent.loggedValue("spool writing again", "virtmeter.spool.lost_samples") == lost)
        let received = try await agent.check("full disk (1 MiB tmpfs) with the broker down", broker: broker,
                                             allowedLoss: lost)
        // A restart resends nothing that was already confirmed.
        try agent.start()
        _ = try await agent.waitForLog("cycle done", count: agent.logged("cycle done") + 2, timeout: 30)
        #expect(agent.stop() == 0)
        let again = try await agent.received(from: broker)
        #expect(Set(again).isDisjoint(with: Set(received)), "a restart resent confirmed samples")
    }
}

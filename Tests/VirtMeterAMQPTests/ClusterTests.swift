import Foundation
import Testing
import VirtMeterAMQP
import VirtMeterCore
import VirtMeterTestSupport

/// The three-node RabbitMQ cluster that scripts/test-amqp-cluster starts on loopback (ports, folders and the per-node
/// users' password come from its environment).
struct TestCluster {
    let ports: [Int]
    let directories: [String]
    let password: String

    static let howToStart = "these tests need the three-node RabbitMQ cluster that scripts/test-amqp-cluster starts "
        + "(it sets VIRTMETER_TEST_CLUSTER_PORTS, _DIRS and _PASSWORD and runs them)"

    /// The cluster from the environment; a missing variable fails the test, never skips it.
    static func fromEnvironment() throws -> TestCluster {
        func variable(_ name: String) throws -> String {
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                Issue.record("\(name) is not set: \(howToStart)")
                throw TestBroker.MissingBroker()
            }
            return value
        }
        let ports = try variable("VIRTMETER_TEST_CLUSTER_PORTS").split(separator: ",").compactMap { Int($0) }
        let directories = try variable("VIRTMETER_TEST_CLUSTER_DIRS").split(separator: ",").map(String.init)
        try #require(ports.count == 3 && directories.count == 3)
        return TestCluster(ports: ports, directories: directories,
                           password: try variable("VIRTMETER_TEST_CLUSTER_PASSWORD"))
    }

    /// The user of node `index` (0-based): each node has its own.
    func user(_ index: Int) -> String { "vmtest-node\(index + 1)" }

    /// oslo's form with every node and its own user: `amqp://vmtest-node1@127.0.0.1:P1,vmtest-node2@...:P2,.../`.
    var osloURL: String {
        "amqp://" + ports.indices.map { "\(user($0))@127.0.0.1:\(ports[$0])" }.joined(separator: ",") + "/"
    }

    /// Node `index` as a URL with its user and password, for the test's own consumer.
    func url(_ index: Int) throws -> AMQPURL {
        try AMQPURL("amqp://\(user(index)):\(password)@127.0.0.1:\(ports[index])/")
    }

    static let script = repositoryRoot.appendingPathComponent("scripts/rabbitmq-test-broker").path

    /// `kill -9` of node `index`'s Erlang VM; returns once its port is closed.
    func kill9(_ index: Int) throws {
        let pid = try String(contentsOfFile: directories[index] + "/beam.pid", encoding: .utf8)
        _ = kill(pid_t(pid.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, SIGKILL)
        while !OwnBroker.isFree(ports[index]) { Thread.sleep(forTimeInterval: 0.05) }
    }

    /// Starts the given nodes again, all at once (after the whole cluster went down, each waits for its peers), and
    /// returns once every one of them is ready; they rejoin the cluster from their data folders.
    func start(_ indexes: [Int]) throws {
        let commands = indexes.map { index in
            "VIRTMETER_BROKER_ERL_ARGS='+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none' '\(Self.script)' start "
                + "'\(directories[index])' \(ports[index]) >>'\(directories[index])/script.log' 2>&1 & p\(index)=$!"
        }
        let waits = indexes.map { "wait $p\($0)" }.joined(separator: " && ")
        guard shell(commands.joined(separator: "; ") + "; " + waits) == 0 else {
            throw KitFailure("cluster nodes \(indexes) did not start again: see their script.log")
        }
    }

    /// `rabbitmqctl` on node `index`: its output, or a failure.
    func ctl(_ index: Int, _ arguments: [String]) throws -> String {
        let result = try runProgram(Self.script, ["ctl", directories[index]] + arguments)
        guard result.status == 0 else { throw KitFailure("rabbitmqctl \(arguments): \(result.stderr)") }
        return result.stdout
    }

    /// The index of the node whose port appears in `line`, if one does.
    func node(in line: Substring) -> Int? {
        ports.indices.first { line.contains("127.0.0.1:\(ports[$0])") }
    }
}

extension FaultAgent {
    /// The node (by port) that the last "connected"/"switched" line of the log names.
    func connectedNode(_ cluster: TestCluster) -> Int? {
        let line = log.split(separator: "\n")
            .last { $0.contains("connected to the AMQP broker") || $0.contains("switched to another node") }
        let field = line?.split(separator: " ")
            .first { $0.hasPrefix("virtmeter.amqp.url=") || $0.hasPrefix("virtmeter.amqp.node=") }
        return field.flatMap { cluster.node(in: $0) }
    }
}

@Suite("a three-node RabbitMQ cluster: failover, quorum queues, node lists", .serialized)
struct ClusterTests {
    @Test("kill -9 of the node in use: failover within seconds to another node with its own user; quorum queue: 0 lost")
    func failover() async throws {
        let cluster = try TestCluster.fromEnvironment()
        var agent = try FaultAgent(url: cluster.osloURL, amqpSettings: ["quorum_queue: true"],
                                   password: cluster.password)
        try agent.start()
        defer { agent.ensureStopped() }
        _ = try await agent.waitForLog("messages confirmed", count: 5, timeout: 30)
        let victim = try #require(agent.connectedNode(cluster), "no connected node in the log:\n\(agent.log)")
        // The connection on the broker is the node's own user's (users are cluster-wide: the URL's user is the proof).
        let connections = try cluster.ctl((victim + 1) % 3, ["list_connections", "user", "port", "--silent"])
        #expect(connections.split(separator: "\n").contains { $0.contains(cluster.user(victim))
                                                             && $0.contains("\(cluster.ports[victim])") },
                "\(connections)")
        let queueType = try cluster.ctl((victim + 1) % 3, ["list_queues", "name", "type", "durable", "--silent"])
        #expect(queueType.split(separator: "\n").contains { $0.contains(agent.topic + ".sample")
                                                           && $0.contains("quorum") && $0.contains("true") },
                "\(queueType)")

        let before = agent.log.count
        let killed = SampleClock.monotonic()
        try cluster.kill9(victim)
        // The next tests need the whole cluster, even when this one fails half-way.
        defer { try? cluster.start([victim]) }
        var failover: Double?
        var newNode: Int?
        while SampleClock.monotonic() - killed < 30 {
            let lines = agent.log.dropFirst(before).split(separator: "\n")
            if let line = lines.first(where: { $0.contains("messages confirmed") }), let node = cluster.node(in: line),
               node != victim {
                failover = SampleClock.monotonic() - killed
                newNode = node
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let seconds = try #require(failover,
                                   "no publish confirmed by another node within 30 s:\n\(agent.log.suffix(3000))")
        print("FIGURE cluster failover: node \(cluster.ports[victim]) killed -> first publish confirmed by node "
              + "\(cluster.ports[newNode!]) after \(String(format: "%.2f", seconds)) s")
        #expect(seconds < 10, "failover took \(seconds) s")
        // Each switch is one line naming the node and its user. While the quorum queue elects its new leader, a node
        // may refuse the channel: the retry moves on to the other live node, one more line each time (seen: three
        // within the same second). A few lines, never a flood, and the last one names the node that confirmed.
        let switches = agent.log.dropFirst(before).split(separator: "\n")
            .filter { $0.contains("switched to another node") }
        #expect((1...4).contains(switches.count) && switches.last!.contains("127.0.0.1:\(cluster.ports[newNode!])"),
                "\(switches)")
        for line in switches {
            let node = line.split(separator: " ").first { $0.hasPrefix("virtmeter.amqp.node=") }
                .flatMap { cluster.node(in: $0) }
            #expect(node != nil && node != victim && line.contains(cluster.user(node ?? 0) + ":***@"), "\(line)")
        }
        try await Task.sleep(for: .seconds(8))
        #expect(agent.stop() == 0)
        #expect(!agent.log.contains(cluster.password), "the password appeared in the agent's log")
        // Every sample produced is on the quorum queue, read from a node that stayed up.
        try await agent.check("cluster: kill -9 of the connected node, quorum queue", url: try cluster.url(newNode!))
    }

    @Test("the whole cluster killed for 15 s, then back: the spool covers it, 0 lost (quorum queue)")
    func wholeClusterDown() async throws {
        let cluster = try TestCluster.fromEnvironment()
        var agent = try FaultAgent(url: cluster.osloURL, amqpSettings: ["quorum_queue: true", "shuffle_nodes: true"],
                                   password: cluster.password)
        try agent.start()
        defer { agent.ensureStopped() }
        _ = try await agent.waitForLog("messages confirmed", count: 3, timeout: 30)
        for index in 0..<3 { try cluster.kill9(index) }
        defer { if OwnBroker.isFree(cluster.ports[0]) { try? cluster.start([0, 1, 2]) } }
        _ = try await agent.waitForLog("publishing failed", timeout: 15)
        try await Task.sleep(for: .seconds(15))
        let back = SampleClock.monotonic()
        try cluster.start([0, 1, 2])
        let ready = SampleClock.monotonic() - back
        _ = try await agent.waitForLog("publishing recovered", timeout: 90)
        let outage = agent.loggedValue("publishing recovered", "virtmeter.publish.outage_seconds") ?? -1
        print("FIGURE cluster down 15 s: the three nodes ready \(String(format: "%.1f", ready)) s after their restart "
              + "began; publishing outage \(outage) s")
        try await Task.sleep(for: .seconds(3))
        #expect(agent.stop() == 0)
        #expect(agent.logged("publishing failed") == 1, "the outage is logged once")
        try await agent.check("cluster: all three nodes killed for 15 s, quorum queue", url: try cluster.url(0))
    }

    @Test("a node list with one dead node among good ones: publishing works, one log line about the dead node")
    func deadNodeInList() async throws {
        let cluster = try TestCluster.fromEnvironment()
        var dead = 6990
        while !OwnBroker.isFree(dead) { dead += 1 }
        // A YAML list of full URLs, the dead node first so that it is tried.
        let url = "[amqp://\(cluster.user(0))@127.0.0.1:\(dead)/, "
            + "amqp://\(cluster.user(1))@127.0.0.1:\(cluster.ports[1])/, "
            + "amqp://\(cluster.user(2))@127.0.0.1:\(cluster.ports[2])/]"
        var agent = try FaultAgent(url: url, password: cluster.password)
        try agent.start()
        defer { agent.ensureStopped() }
        _ = try await agent.waitForLog("messages confirmed", count: 4, timeout: 30)
        #expect(agent.stop() == 0)
        let lines = agent.log.split(separator: "\n").filter { $0.contains("127.0.0.1:\(dead)") }
        #expect(lines.count == 1 && lines[0].contains("AMQP node unreachable"), "\(lines)")
        #expect(agent.logged("publishing failed") == 0)
        try await agent.check("cluster: a dead node in the list", url: try cluster.url(1))
    }

    @Test("amqp:// and amqps:// mixed in one list are refused at start-up with one line")
    func mixedSchemes() throws {
        let cluster = try TestCluster.fromEnvironment()
        let yamlList = "[amqp://u@127.0.0.1:\(cluster.ports[0])/, amqps://u@localhost:5671/]"
        let agent = try FaultAgent(url: yamlList, password: cluster.password)
        let config = agent.directory.appendingPathComponent("virtmeter.yaml").path
        let fromFile = try runProgram(virtmeterBinary, ["run", "--config", config])
        #expect(fromFile.status == 1)
        #expect(fromFile.stderr.split(separator: "\n").count == 1 && fromFile.stderr.contains(
            "virtmeter.yaml:10: publishers[0].url: node 1 is amqp:// and node 2 amqps://: amqp:// and amqps:// "
            + "cannot be mixed"), "\(fromFile.stderr)")
        // oslo's form on the command line (or in VIRTMETER_AMQP_URL) over a valid file.
        let valid = try FaultAgent(url: "amqp://u@127.0.0.1:\(cluster.ports[0])/", password: cluster.password)
        let oslo = "amqp://u@127.0.0.1:\(cluster.ports[0]),amqps://u@localhost:5671/"
        let fromFlag = try runProgram(virtmeterBinary, [
            "run", "--config", valid.directory.appendingPathComponent("virtmeter.yaml").path, "--publish", oslo])
        #expect(fromFlag.status == 1)
        #expect(fromFlag.stderr.split(separator: "\n").count == 1 && fromFlag.stderr.contains(
            "node 2 of the URL list is localhost:5671 with amqps://, node 1 with amqp://: amqp:// and amqps:// "
            + "cannot be mixed"), "\(fromFlag.stderr)")
        try? FileManager.default.removeItem(at: agent.directory)
        try? FileManager.default.removeItem(at: valid.directory)
    }

    @Test("quorum_queue against an existing classic queue: start-up stops with one line naming the option")
    func quorumMismatch() throws {
        let cluster = try TestCluster.fromEnvironment()
        let topic = uniqueName("vmtest-qq"), exchange = uniqueName("vmtest-qq-ex")
        let common = ["poll", "--connect", amqpNodeURI, "--meters", "vcpus", "--publish",
                      "amqp://\(cluster.user(0))@127.0.0.1:\(cluster.ports[0])/", "--topic", topic,
                      "--exchange", exchange, "--exchange-durable"]
        let environment = ["VIRTMETER_AMQP_PASSWORD": cluster.password]
        let classic = try runProgram(virtmeterBinary, common, environment: environment)
        #expect(classic.status == 0, "\(classic.stderr)")
        let quorum = try runProgram(virtmeterBinary, common + ["--quorum-queue"], environment: environment)
        #expect(quorum.status == 1)
        #expect(quorum.stderr.split(separator: "\n").count == 1
                && quorum.stderr.contains("declare queue '\(topic).sample'")
                && quorum.stderr.contains("set quorum_queue (and exchange_durable) to match it"), "\(quorum.stderr)")
        _ = try cluster.ctl(0, ["delete_queue", topic + ".sample"])
    }
}

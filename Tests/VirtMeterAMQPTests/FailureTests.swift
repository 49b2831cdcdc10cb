import Foundation
import Testing
@testable import VirtMeterAMQP
import VirtMeterCore
import VirtMeterTestSupport

/// `rabbitmqctl` on the test broker (its folder comes from scripts/test-amqp).
func brokerControl(_ arguments: [String]) throws {
    let directory = try TestBroker.variable("VIRTMETER_TEST_BROKER_DIR")
    let result = try runProgram(repositoryRoot.appendingPathComponent("scripts/rabbitmq-test-broker").path,
                                ["ctl", directory] + arguments)
    #expect(result.status == 0, "rabbitmqctl \(arguments): \(result.stderr)")
}

@Suite("publisher confirms: nacks and lost connections")
struct ConfirmFailureTests {
    @Test("a nack leaves exactly the nacked samples undelivered, named in the error")
    func nack() async throws {
        let url = try TestBroker.url()
        // A queue that holds one message and rejects more: the broker nacks what it cannot route there.
        try brokerControl(["set_policy", "vmtest-nack", "^vmtest-nack-", #"{"max-length":1,"overflow":"reject-publish"}"#,
                           "--apply-to", "queues"])
        let topic = uniqueName("vmtest-nack")
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: url, exchange: uniqueName("vmtest-ex"), topic: topic))
        try await publisher.connect()
        try await Task.sleep(for: .milliseconds(300))  // the policy reaches the new queue
        let samples = try (0..<3).map { _ in try testSample() }
        do {
            try await publisher.publish(wire(samples, perRecord: 1))
            Issue.record("publish succeeded although the queue rejects all but one message")
        } catch let error as AMQPUnconfirmedError {
            #expect(error.records == [1, 2] && error.samples == 2)
            #expect(error.total == 3)
            #expect("\(error)".hasPrefix("2 of 3 messages (2 samples) not confirmed"))
        }
        // The connection is still usable after a nack.
        _ = try? await publisher.deleteQueue()
        await publisher.close()
    }

    @Test("a connection closed by the broker fails the batch with its samples, and the next publish reconnects")
    func lostConnection() async throws {
        // A vhost of its own, so closing its connections leaves the other tests' connections alone.
        var url = try TestBroker.url()
        url.vhost = uniqueName("vmtest-lost")
        try brokerControl(["add_vhost", url.vhost])
        try brokerControl(["set_permissions", "-p", url.vhost, url.user, ".*", ".*", ".*"])
        let topic = uniqueName("vmtest-lost")
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: url, exchange: uniqueName("vmtest-ex"), topic: topic, heartbeatSeconds: 0))
        try await publisher.publish(wire([try testSample()]))
        try brokerControl(["close_all_connections", "-p", url.vhost, "virtmeter test"])
        try await Task.sleep(for: .milliseconds(300))
        let samples = try (0..<120).map { _ in try testSample() }
        do {
            try await publisher.publish(wire(samples))
            Issue.record("publish succeeded on a connection the broker closed")
        } catch let error as AMQPUnconfirmedError {
            #expect(error.samples == 120 && error.records == [0, 1, 2])
            #expect("\(error)".contains("not confirmed"))
        }
        try await publisher.publish(wire(samples))
        await publisher.close()
        let deliveries = try await drain(url, queue: topic + ".sample")
        #expect(deliveries.count == 1 + 3)
    }
}

@Suite("clear errors: wrong password, unreachable broker, exchange mismatch, TLS")
struct ErrorTests {
    static let wrongPassword = "Wr0ng-pa55word-not-shown"

    func runPoll(_ arguments: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String) {
        try runProgram(virtmeterBinary, ["poll", "--connect", amqpNodeURI] + arguments, environment: environment)
    }

    func expectOneLine(_ result: (status: Int32, stdout: String, stderr: String), containing text: String,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 1, sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("virtmeter: AMQP "), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(text), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(!result.stderr.contains(Self.wrongPassword) && !result.stdout.contains(Self.wrongPassword),
                sourceLocation: sourceLocation)
        #expect(result.stdout.isEmpty, sourceLocation: sourceLocation)
    }

    @Test("a wrong password: one line, access refused, the password nowhere (env, file and URL)")
    func wrongPassword() throws {
        let url = try TestBroker.url()
        let bare = "amqp://guest@\(url.endpoint)/"
        expectOneLine(try runPoll(["--publish", bare], environment: ["VIRTMETER_AMQP_PASSWORD": Self.wrongPassword]),
                      containing: "ACCESS_REFUSED")
        let file = try temporaryFile("password", Self.wrongPassword + "\n")
        expectOneLine(try runPoll(["--publish", bare, "--amqp-password-file", file.path]), containing: "ACCESS_REFUSED")
        expectOneLine(try runPoll(["--publish", "amqp://guest:\(Self.wrongPassword)@\(url.endpoint)/"]),
                      containing: "ACCESS_REFUSED")
        let tail = try runProgram(virtmeterBinary, ["tail", bare, "--timeout", "1"],
                                  environment: ["VIRTMETER_AMQP_PASSWORD": Self.wrongPassword])
        expectOneLine(tail, containing: "ACCESS_REFUSED")
    }

    @Test("the right password from the environment works")
    func passwordFromEnvironment() throws {
        let url = try TestBroker.url()
        let result = try runPoll(["--publish", "amqp://guest@\(url.endpoint)/", "--exchange", uniqueName("vmtest-ex"),
                                  "--topic", uniqueName("vmtest-env")], environment: ["VIRTMETER_AMQP_PASSWORD": "guest"])
        #expect(result.status == 0, "\(result.stderr)")
    }

    @Test("an unreachable broker: one line saying so")
    func unreachable() throws {
        expectOneLine(try runPoll(["--publish", "amqp://guest:\(Self.wrongPassword)@127.0.0.1:1/"]),
                      containing: "cannot reach the broker")
    }

    @Test("an exchange declared with other flags: one line naming the 406 and what to change")
    func exchangeMismatch() async throws {
        let url = try TestBroker.url()
        let exchange = uniqueName("vmtest-ex")
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(url: url, exchange: exchange))
        try await publisher.connect()
        await publisher.close()
        let result = try runPoll(["--publish", "amqp://guest@\(url.endpoint)/", "--exchange", exchange,
                                  "--exchange-durable"])
        expectOneLine(result, containing: "PRECONDITION_FAILED")
        #expect(result.stderr.contains("durable"))
        // The error keeps the broker's reply code apart from librabbitmq's statuses, and is no outage.
        let durable = AMQPPublisher(configuration: AMQPPublisherConfiguration(url: url, exchange: exchange,
                                                                              durableExchange: true))
        do {
            try await durable.connect()
            Issue.record("declaring the exchange durable succeeded although it exists not durable")
        } catch {
            #expect(error.kind == .channelClosed && error.replyCode == 406 && error.libraryStatus == nil)
            #expect(error.isPreconditionFailed && !error.isOutage)
        }
        await durable.close()
    }

    @Test("the error's kind and codes: a refused login is the broker's 403, an unreachable broker librabbitmq's status")
    func errorKinds() async throws {
        let url = try TestBroker.url()
        var wrong = url
        wrong.password = Self.wrongPassword
        do {
            try await AMQPPublisher(configuration: AMQPPublisherConfiguration(url: wrong)).connect()
            Issue.record("connected with a wrong password")
        } catch {
            #expect(error.kind == .connectionClosed && error.replyCode == 403 && error.libraryStatus == nil,
                    "\(error.kind) \(String(describing: error.replyCode)) \(String(describing: error.libraryStatus))")
            #expect(!error.isOutage)
        }
        do {
            try await AMQPPublisher(configuration: AMQPPublisherConfiguration(
                url: try AMQPURL("amqp://guest@127.0.0.1:1/"), timeoutSeconds: 2)).connect()
            Issue.record("connected to a port nothing listens on")
        } catch {
            #expect(error.kind == .library && error.replyCode == nil && (error.libraryStatus ?? 0) < 0)
            #expect(error.isOutage)
        }
    }

    @Test("a bad URL: one line, password redacted")
    func badURL() throws {
        expectOneLine(try runPoll(["--publish", "amqp://guest:\(Self.wrongPassword)@127.0.0.1:99999/"]),
                      containing: "port is not a number")
        #expect("\(try AMQPURL("amqp://u:\(Self.wrongPassword)@h/v%2Fx"))" == "amqp://u:***@h:5672/v%2Fx")
    }
}

@Suite("AMQPURL")
struct URLTests {
    @Test("parses every part, percent-decoded, with defaults")
    func parse() throws {
        let url = try AMQPURL("amqps://us%40er:p%3Ass@broker.example:5999/%2Fvirt")
        #expect(url.tls && url.host == "broker.example" && url.port == 5999)
        #expect(url.user == "us@er" && url.password == "p:ss" && url.vhost == "/virt")
        let plain = try AMQPURL("amqp://h")
        #expect(!plain.tls && plain.port == 5672 && plain.vhost == "/" && plain.user == "guest")
        #expect(try AMQPURL("amqps://h/").port == 5671)
        #expect(try AMQPURL("amqp://[::1]:5673/").host == "::1")
        #expect(!"\(url)".contains("p:ss") && !"\(url)".contains("p%3Ass"))
        #expect(throws: AMQPError.self) { try AMQPURL("http://h/") }
        #expect(throws: AMQPError.self) { try AMQPURL("amqp://:5672/") }
        #expect(throws: AMQPError.self) { try AMQPURL("amqp://u:%zz@h/") }
    }
}

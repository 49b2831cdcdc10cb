import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterAMQP
import VirtMeterCore


/// libvirt's test driver with the project's node file (four domains with nova metadata, disks and interfaces).
let amqpNodeURI: String = {
    let node = repositoryRoot.appendingPathComponent("etc/virtmeter/test-node.xml").path
    return FileManager.default.fileExists(atPath: node) ? "test://" + node : "test:///default"
}()

/// What the test broker is, from the environment `scripts/test-amqp` sets up.
enum TestBroker {
    static let howToStart = "start one with scripts/test-amqp (it starts RabbitMQ on loopback, sets "
        + "VIRTMETER_TEST_AMQP_URL and runs these tests), or by hand: scripts/rabbitmq-test-broker start "
        + "/tmp/vm-broker 5673 && export VIRTMETER_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5673/"

    /// The plain broker's URL; records a failure that says how to start one when it is not set.
    static func url() throws -> AMQPURL {
        try AMQPURL(try variable("VIRTMETER_TEST_AMQP_URL"))
    }

    /// An environment variable that the broker script sets; a missing one fails the test, never skips it.
    static func variable(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            Issue.record("\(name) is not set: these tests need a real RabbitMQ; \(howToStart)")
            throw MissingBroker()
        }
        return value
    }

    struct MissingBroker: Error {}
}

/// A name no other test uses, so tests can run in parallel on one broker.
func uniqueName(_ prefix: String) -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}


/// Reads every message from `queue` until none arrives for `quiet` seconds.
func drain(_ url: AMQPURL, queue: String, tls: AMQPTLSOptions = AMQPTLSOptions(), quiet: Double = 1.5,
           limit: Int = 100_000) async throws -> [AMQPDelivery] {
    let consumer = AMQPConsumer(configuration: AMQPConsumerConfiguration(url: url, tls: tls, queue: queue))
    _ = try await consumer.connect()
    var deliveries: [AMQPDelivery] = []
    while deliveries.count < limit, let delivery = try await consumer.next(timeoutSeconds: quiet) {
        deliveries.append(delivery)
    }
    await consumer.close()
    return deliveries
}

/// A file with `text` in a fresh temporary folder; removed by the caller.
func temporaryFile(_ name: String, _ text: String) throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("virtmeter-test"))
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let file = directory.appendingPathComponent(name)
    try text.write(to: file, atomically: true, encoding: .utf8)
    return file
}

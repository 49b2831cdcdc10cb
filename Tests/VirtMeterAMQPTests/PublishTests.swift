import Foundation
import Logging
import Testing
@testable import VirtMeterAMQP
import VirtMeterCore
import VirtMeterLibvirt
import VirtMeterTestSupport

@Suite("AMQPPublisher against a real RabbitMQ")
struct PublishTests {
    static let secret = "a publish test secret"

    /// N cycles from the test driver, published in batches, read back from the `<topic>.sample` queue.
    @Test("publishes N cycles from the test driver and reads back exactly those samples", arguments: [50, 7])
    func publishAndReadBack(batchSize: Int) async throws {
        let url = try TestBroker.url()
        let exchange = uniqueName("vmtest-ex"), topic = uniqueName("vmtest-topic")
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: url, exchange: exchange, topic: topic))
        var poller = Poller(hypervisor: try LibvirtHypervisor(uri: amqpNodeURI), meters: MeterRegistry.builtIn.meters,
                            stamper: SampleStamper(host: "compute-amqp", signer: SampleSigner(secret: Self.secret)),
                            samplesPerRecord: batchSize, logger: Logger(label: "test"))
        var published: [JSONValue] = []
        var expectedMessages = 0
        for _ in 0..<3 {
            var perRecord: [Int] = []
            let result = try await poller.cycle { records in
                try await publisher.publish(records)
                published += try records.decodedDicts()
                perRecord += records.spans.map(\.samples)
            }
            // A cycle's samples fill records of the batch size; only its last record may hold fewer.
            #expect(result.samples > 0 && perRecord.reduce(0, +) == result.samples)
            #expect(perRecord.dropLast().allSatisfy { $0 == batchSize } && (perRecord.last ?? 0) <= batchSize)
            expectedMessages += perRecord.count
        }
        await publisher.close()

        let deliveries = try await drain(url, queue: topic + ".sample")
        #expect(deliveries.count == expectedMessages)
        var received: [DecodedSample] = []
        for delivery in deliveries {
            #expect(delivery.exchange == exchange)
            #expect(delivery.routingKey == topic + ".sample")
            #expect(delivery.properties == AMQPProperties(contentType: "application/json", contentEncoding: "utf-8",
                                                          deliveryMode: 2, priority: 0))
            let envelope = try NotificationEnvelope.decode(delivery.body)
            #expect(envelope.eventType == "telemetry.polling")
            #expect(envelope.priority == "SAMPLE")
            #expect(envelope.publisherID == "ceilometer.polling")
            #expect(envelope.uniqueID.count == 32)
            #expect(envelope.timestamp.count == 26 && Array(envelope.timestamp)[10] == " ")
            let samples = try envelope.samples()
            #expect(samples.count <= batchSize)
            received += samples
        }
        #expect(received.count == published.count)
        let signer = SampleSigner(secret: Self.secret)
        #expect(received.allSatisfy { $0.verify(with: signer) })
        for (got, sent) in zip(received, published) {
            #expect(got.json == sent)
        }
        #expect(Set(received.compactMap { $0.sample?.messageID }).count == published.count)
    }

    /// The publisher writes a message's frames itself on plain TCP: a body in one frame, one that fills a frame to the
    /// byte, one just over, one of several frames, and none, all arrive whole, in order, with their properties.
    @Test("bodies of no, one and several frames arrive whole, in order")
    func frames() async throws {
        let url = try TestBroker.url()
        let topic = uniqueName("vmtest-frames")
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: url, exchange: uniqueName("vmtest-ex"), topic: topic))
        let frameBody = 131_072 - 8   // the frame_max the publisher asks for, less a frame's header and end
        let bodies = [1_000, frameBody, frameBody + 1, 3 * frameBody + 17, 0].enumerated().map { index, count in
            (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
        }
        try await publisher.publish(rawBodies: bodies)
        try await publisher.publish(rawBodies: [Array("after".utf8)])
        await publisher.close()
        let deliveries = try await drain(url, queue: topic + ".sample")
        #expect(deliveries.map(\.body) == bodies + [Array("after".utf8)])
        #expect(deliveries.allSatisfy {
            $0.properties == AMQPProperties(contentType: "application/json", contentEncoding: "utf-8",
                                            deliveryMode: 2, priority: 0)
        })
    }

    @Test("an idle connection survives several heartbeat intervals")
    func heartbeats() async throws {
        let url = try TestBroker.url()
        let topic = uniqueName("vmtest-hb")
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: url, exchange: uniqueName("vmtest-ex"), topic: topic, heartbeatSeconds: 1))
        let sample = try testSample()
        try await publisher.publish(wire([sample]))
        // The broker drops a connection that misses two heartbeats (2 s here); stay idle for three times that.
        try await Task.sleep(for: .seconds(6))
        try await publisher.publish(wire([sample]))
        await publisher.close()
        let deliveries = try await drain(url, queue: topic + ".sample")
        #expect(deliveries.count == 2)
    }
}

/// One signed sample, made from the test driver.
func testSample() throws -> Sample {
    Sample(source: "openstack", name: "memory.usage", type: .gauge, unit: "MiB", volume: .double(387.5),
           userID: "u1", projectID: "p1", resourceID: "a6b2c4d8-1234-4e5f-9abc-def012345678",
           timestamp: SampleClock.utcTimestamp(nanoseconds: SampleClock.wallNanoseconds()),
           resourceMetadata: .object([("display_name", .string("web-01"))]),
           messageID: UUIDv1Generator().next(), monotonicTime: SampleClock.monotonic())
}

/// `samples` as the agent publishes them: written by the production encoder, signed with `secret`.
func wire(_ samples: [Sample], secret: String = PublishTests.secret, perRecord: Int = 50) -> SampleRecords {
    encodedRecords(samples, signer: SampleSigner(secret: secret), perRecord: perRecord)
}

extension Sample {
    /// The dict a consumer should receive for this sample signed with `secret` (the test oracle's tree).
    func expectedJSON(secret: String = PublishTests.secret) -> JSONValue {
        oracleSigned(with: SampleSigner(secret: secret)).oracleJSON
    }
}

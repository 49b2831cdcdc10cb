import Foundation
import Testing
import VirtMeterAMQP
import VirtMeterCore
import VirtMeterTestSupport

@Suite("TLS to a broker with a certificate for localhost")
struct TLSTests {
    func material() throws -> (url: AMQPURL, directory: String) {
        (try AMQPURL(try TestBroker.variable("VIRTMETER_TEST_AMQPS_URL")), try TestBroker.variable("VIRTMETER_TEST_TLS_DIR"))
    }

    @Test("the right CA works, with and without a client certificate; samples read back over TLS")
    func rightCA() async throws {
        let (url, directory) = try material()
        for client in [false, true] {
            let tls = AMQPTLSOptions(caFile: directory + "/ca.pem", certFile: client ? directory + "/client.pem" : nil,
                                     keyFile: client ? directory + "/client.key" : nil)
            let topic = uniqueName("vmtest-tls")
            let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
                url: url, tls: tls, exchange: uniqueName("vmtest-ex"), topic: topic))
            let sample = try testSample()
            try await publisher.publish(wire([sample]))
            await publisher.close()
            let deliveries = try await drain(url, queue: topic + ".sample", tls: tls, quiet: 1)
            #expect(deliveries.count == 1)
            let received = try NotificationEnvelope.decode(try #require(deliveries.first).body).samples()
            #expect(received.first?.json == sample.expectedJSON())
        }
    }

    @Test("a wrong CA fails with a clear error")
    func wrongCA() async throws {
        let (url, directory) = try material()
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: url, tls: AMQPTLSOptions(caFile: directory + "/wrong-ca.pem")))
        await #expect {
            try await publisher.connect()
        } throws: { error in
            "\(error)".contains("TLS") && "\(error)".contains("CA")
        }
        let result = try runProgram(virtmeterBinary, ["poll", "--connect", amqpNodeURI, "--publish", "\(url.tls ? "amqps" : "amqp")://guest@\(url.endpoint)/",
                                                          "--amqp-ca-file", directory + "/wrong-ca.pem"])
        #expect(result.status == 1)
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(result.stderr.hasPrefix("virtmeter: AMQP connect to localhost:") && result.stderr.contains("CA"),
                "\(result.stderr)")
    }

    @Test("a certificate for localhost does not pass for 127.0.0.1: host name verification is on")
    func hostName() async throws {
        let (url, directory) = try material()
        var byAddress = url
        byAddress.host = "127.0.0.1"
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: byAddress, tls: AMQPTLSOptions(caFile: directory + "/ca.pem")))
        await #expect {
            try await publisher.connect()
        } throws: { error in
            "\(error)".contains("TLS")
        }
    }
}

import Foundation
import Testing
@testable import VirtMeterAMQP
import VirtMeterCore
import VirtMeterTestSupport

@Suite("virtmeter tail and poll --publish")
struct TailTests {
    @Test("poll --publish then tail --queue --secret-file: every sample shown, all signatures good")
    func pollThenTail() throws {
        let url = try TestBroker.url()
        let secret = try temporaryFile("secret", "tail test secret\n")
        let exchange = uniqueName("vmtest-ex"), topic = uniqueName("vmtest-poll")
        let bare = "amqp://guest@\(url.endpoint)/"
        let poll = try runProgram(virtmeterBinary, [
            "poll", "--connect", amqpNodeURI, "--publish", bare, "--exchange", exchange, "--topic", topic,
            "--count", "2", "--interval", "0.2", "--batch-size", "10", "--secret-file", secret.path,
        ])
        #expect(poll.status == 0, "\(poll.stderr)")
        #expect(poll.stdout.isEmpty)
        let tail = try runProgram(virtmeterBinary, [
            "tail", bare, "--queue", topic + ".sample", "--timeout", "2", "--secret-file", secret.path,
        ])
        #expect(tail.status == 0, "\(tail.stderr)")
        let lines = tail.stdout.split(separator: "\n")
        #expect(lines.count > 20)
        #expect(lines.allSatisfy { $0.split(separator: " ", omittingEmptySubsequences: true).count == 5 })
        #expect(lines.contains { $0.contains("  memory  ") && $0.hasSuffix("MiB") })
        #expect(tail.stderr.contains("\(lines.count) samples") && tail.stderr.contains(", 0 bad signatures"))
    }

    @Test("tail --secret-file marks and counts a sample signed with another secret, and exits 1")
    func badSignature() async throws {
        let url = try TestBroker.url()
        let topic = uniqueName("vmtest-sig")
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: url, exchange: uniqueName("vmtest-ex"), topic: topic))
        let good = try (0..<3).map { _ in try testSample() }
        let forged = try testSample()
        try await publisher.publish(wire(good, secret: "the right secret"))
        try await publisher.publish(wire([forged], secret: "another secret"))
        try await publisher.publish(wire(good, secret: "the right secret"))
        await publisher.close()
        let secret = try temporaryFile("secret", "the right secret\n")
        let tail = try runProgram(virtmeterBinary, [
            "tail", "amqp://guest@\(url.endpoint)/", "--queue", topic + ".sample", "--count", "7",
            "--timeout", "10", "--secret-file", secret.path,
        ])
        #expect(tail.status == 1)
        let lines = tail.stdout.split(separator: "\n")
        #expect(lines.count == 7)
        #expect(lines.filter { $0.hasSuffix("BAD-SIGNATURE") }.count == 1)
        #expect(lines[3].hasSuffix("BAD-SIGNATURE"))
        #expect(tail.stderr.contains("1 bad signatures"))
        #expect(tail.stderr.hasSuffix("virtmeter: 1 of 7 samples failed signature verification\n"))
    }

    @Test("tail binds its own queue; malformed messages are reported and skipped; --json prints the dicts")
    func ownQueueAndMalformed() async throws {
        let url = try TestBroker.url()
        let exchange = uniqueName("vmtest-ex"), topic = uniqueName("vmtest-own")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: virtmeterBinary)
        process.arguments = ["tail", "amqp://guest@\(url.endpoint)/", "--exchange", exchange, "--topic", topic,
                             "--json", "--count", "2", "--timeout", "20"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Wait until it has bound its queue.
        var stderr = Data()
        while !String(decoding: stderr, as: UTF8.self).contains("reading queue") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            stderr += chunk
        }
        #expect(String(decoding: stderr, as: UTF8.self).contains("reading queue amq.gen-"))
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: url, exchange: exchange, topic: topic, declareQueue: false))
        try await publisher.publish(rawBodies: [Array("not an envelope".utf8),
                                                Array(#"{"oslo.version": "2.0", "oslo.message": "{}"}"#.utf8)])
        let samples = try (0..<2).map { _ in try testSample() }
        try await publisher.publish(wire(samples))
        await publisher.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        stderr += err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let lines = String(decoding: stdout, as: UTF8.self).split(separator: "\n")
        #expect(try lines.map { try JSONValue.parse(String($0)) } == samples.map { $0.expectedJSON() })
        let errors = String(decoding: stderr, as: UTF8.self)
        #expect(errors.contains("malformed message: invalid JSON"))
        #expect(errors.contains("malformed message: missing or mistyped field"))
        #expect(errors.contains("2 samples in 3 messages, 2 malformed"))
    }
}

@Suite("an independent consumer: oslo.messaging's notification listener")
struct OsloListenerTests {
    @Test("receives the samples as telemetry.polling with payload {samples: [...]}, signatures valid")
    func osloListener() async throws {
        let url = try TestBroker.url()
        let python = try TestBroker.variable("VIRTMETER_TEST_PYTHON")
        let exchange = uniqueName("vmtest-oslo-ex"), topic = uniqueName("vmtest-oslo")
        let secret = "oslo test secret"
        let samples = try (0..<120).map { _ in try testSample() }
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(url: url, exchange: exchange, topic: topic))
        try await publisher.publish(wire(samples, secret: secret))
        await publisher.close()
        let result = try runProgram(python, [repositoryRoot.appendingPathComponent("scripts/oslo-listener-check.py").path],
                                    environment: [
                                        "VIRTMETER_CHECK_URL": "rabbit://guest:guest@\(url.endpoint)/",
                                        "VIRTMETER_CHECK_EXCHANGE": exchange, "VIRTMETER_CHECK_TOPIC": topic,
                                        "VIRTMETER_CHECK_COUNT": "120", "VIRTMETER_CHECK_TIMEOUT": "30",
                                        "VIRTMETER_CHECK_SECRET": secret,
                                    ])
        #expect(result.status == 0, "\(result.stderr)")
        let line = try #require(result.stdout.split(separator: "\n").last)
        let report = try JSONValue.parse(String(line))
        #expect(report["samples"] == .int(120))
        #expect(report["messages"] == .int(3))
        #expect(report["event_types"] == .array([.string("telemetry.polling")]))
        #expect(report["publisher_ids"] == .array([.string("ceilometer.polling")]))
        #expect(report["payload_keys"] == .array([.string("samples")]))
        #expect(report["bad_signatures"] == .int(0))
        #expect(report["message_ids"] == .array(samples.map { .string($0.messageID) }))
    }
}

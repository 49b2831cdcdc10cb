import ArgumentParser
import Foundation
import Logging
import VirtMeterAMQP
import VirtMeterCore

/// `virtmeter tail URL`: shows the samples on the bus, one line each, and checks their signatures.
struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print the samples published to an AMQP exchange (time, resource, meter, volume, unit).",
        discussion: """
            Binds an exclusive auto-delete queue of its own to the exchange with <topic>.sample (or reads --queue). \
            With --secret-file every signature is verified; failures are marked BAD-SIGNATURE, counted, and make \
            the exit status 1. Malformed messages are reported on stderr and skipped.
            """
    )

    @Argument(help: "Broker URL, amqp://user@host:port/vhost or amqps://...")
    var url: String

    @Option(help: "Read this existing queue (messages are taken off it) instead of a queue of tail's own.")
    var queue: String?

    @Flag(help: "Print each sample dict as a JSON line, as received.")
    var json = false

    @Option(help: ArgumentHelp("File holding the telemetry secret: verify every sample's signature.",
                               valueName: "path"))
    var secretFile: String?

    @Option(help: "Stop after this many samples.")
    var count: Int?

    @Option(help: "Stop after this many seconds.")
    var timeout: Double?

    @OptionGroup(title: "AMQP") var amqp: AMQPOptions

    @Option(help: "Log level on stderr (trace, debug, info, notice, warning, error, critical).")
    var logLevel: Logger.Level = .warning

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let timeout, timeout <= 0 { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        bootstrapLogging(logLevel)
        try await reportingErrors {
            let signer: SampleSigner? = try secretFile.map { try loadSigner($0) }
            let consumer = AMQPConsumer(configuration: AMQPConsumerConfiguration(
                url: try amqp.url(url), tls: amqp.tls, exchange: amqp.exchange, durableExchange: amqp.exchangeDurable,
                routingKey: CeilometerAMQP.routingKey(topic: amqp.topic), queue: queue,
                heartbeatSeconds: amqp.amqpHeartbeat))
            let name = try await consumer.connect()
            FileHandle.standardError.write(Data("tail: reading queue \(name)\n".utf8))
            var tally = Tally()
            let deadline = timeout.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
            while count.map({ tally.samples < $0 }) ?? true {
                var wait = 1.0
                if let deadline {
                    let left = ContinuousClock.now.duration(to: deadline)
                    guard left > .zero else { break }
                    wait = min(wait, Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18)
                }
                guard let delivery = try await consumer.next(timeoutSeconds: wait) else { continue }
                show(delivery, signer: signer, tally: &tally)
            }
            await consumer.close()
            let summary = "tail: \(tally.samples) samples in \(tally.messages) messages, \(tally.malformed) malformed"
                + (signer == nil ? "" : ", \(tally.badSignatures) bad signatures")
            FileHandle.standardError.write(Data((summary + "\n").utf8))
            if tally.badSignatures > 0 {
                throw CLIError("\(tally.badSignatures) of \(tally.samples) samples failed signature verification")
            }
        }
    }

    struct Tally {
        var messages = 0, samples = 0, malformed = 0, badSignatures = 0
    }

    /// Prints one line per sample of `delivery` (or reports it as malformed), up to `--count` samples.
    private func show(_ delivery: AMQPDelivery, signer: SampleSigner?, tally: inout Tally) {
        tally.messages += 1
        let samples: [DecodedSample]
        do {
            samples = try NotificationEnvelope.decode(delivery.body).samples()
        } catch {
            tally.malformed += 1
            FileHandle.standardError.write(Data(
                "tail: skipped message \(delivery.deliveryTag) (routing key \(delivery.routingKey)): \(error)\n".utf8))
            return
        }
        var out = ""
        for decoded in samples {
            if let count, tally.samples >= count { break }
            tally.samples += 1
            let bad = signer.map { !decoded.verify(with: $0) } ?? false
            if bad { tally.badSignatures += 1 }
            if json {
                decoded.json.write(to: &out)
                out += "\n"
                if bad {
                    let id = decoded.json["message_id"]?.stringValue ?? "?"
                    FileHandle.standardError.write(Data("tail: BAD-SIGNATURE message_id \(id)\n".utf8))
                }
                continue
            }
            guard let sample = decoded.sample else {
                tally.malformed += 1
                FileHandle.standardError.write(Data("tail: skipped a sample dict without the sample keys\n".utf8))
                continue
            }
            let volume: String
            switch sample.volume {
            case .int(let value): volume = String(value)
            case .double(let value): volume = PythonRepr.float(value)
            }
            out += [sample.timestamp, sample.resourceID, sample.name, volume, sample.unit.isEmpty ? "-" : sample.unit]
                .joined(separator: "  ")
            out += bad ? "  BAD-SIGNATURE\n" : "\n"
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}

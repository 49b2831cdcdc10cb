import ArgumentParser
import Foundation
import Logging
import VirtMeterAgent
import VirtMeterAMQP
import VirtMeterCore
import VirtMeterLibvirt

/// `virtmeter poll`: poll libvirt once (or N times) and print the samples as JSON lines.
struct PollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poll",
        abstract: "Poll every running domain and print its samples as JSON lines on stdout, or publish them over AMQP."
    )

    @OptionGroup var sampling: SamplingOptions

    @Option(help: ArgumentHelp("Directory of *.yaml files declaring meters over libvirt's bulk stats (as "
                               + "virtmeter.yaml's meters_dir); --meters selects them by name.", valueName: "path"))
    var metersDir: String?

    @Option(help: "Number of poll cycles.")
    var count = 1

    @Option(help: "Seconds between the starts of two cycles.")
    var interval: Double = 10

    @Option(help: ArgumentHelp("Where samples go: 'stdout' (JSON lines), or an amqp:// or amqps:// broker URL or a "
                               + "cluster's nodes (amqp://u@h1:5672,u@h2:5672/vhost).", valueName: "stdout|url"))
    var publish = "stdout"

    @Option(help: "At most this many samples per AMQP message.")
    var batchSize = 50

    @Flag(help: "Do not declare and bind the <topic>.sample queue on connecting.")
    var noDeclareQueue = false

    @Flag(help: ArgumentHelp("Declare <topic>.sample as a quorum queue (durable, with a durable exchange), as "
                             + "oslo.messaging's rabbit_quorum_queue."))
    var quorumQueue = false

    @OptionGroup(title: "AMQP") var amqp: AMQPOptions

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard PollingSource.intervalRange.contains(interval) else {
            throw ValidationError("--interval must be between \(PollingSource.intervalRange.lowerBound) and "
                                  + "\(Int(PollingSource.intervalRange.upperBound)) seconds")
        }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() async throws {
        bootstrapLogging(sampling.logLevel)
        try await reportingErrors {
            let meters = try sampling.selectedMeters(from: try declaredRegistry(metersDir))
            let stamper = SampleStamper(host: sampling.hostName, signer: try sampling.signer())
            let hypervisor = try LibvirtHypervisor(uri: sampling.uri, readOnly: !sampling.readWrite,
                                                   callTimeout: LibvirtHypervisor.callTimeout(interval: interval),
                                                   options: try sampling.inspection,
                                                   logger: Logger(label: "virtmeter.libvirt"))
            hypervisor.request(StatsFieldRequest(meters: meters))
            var poller = Poller(hypervisor: hypervisor, meters: meters, stamper: stamper, samplesPerRecord: batchSize,
                                logger: Logger(label: "virtmeter.poll"))
            let publisher = try await makePublisher()
            // Ticks missed by a cycle that overran the interval are skipped (and logged), as `run` does.
            let clock = ElapsedClock()
            var schedule = Schedule(sources: [("poll", .seconds(interval))], start: clock.now)
            let logger = Logger(label: "virtmeter.poll")
            for cycle in 0..<count {
                _ = try await poller.cycle { records in try await publisher.publish(records) }
                let skipped = schedule.advance(["poll"], now: clock.now)["poll"] ?? 0
                if skipped > 0 {
                    logger.warning("cycle overran the interval: ticks skipped", metadata: [
                        "virtmeter.poll.skipped_ticks": "\(skipped)",
                    ])
                }
                if cycle + 1 < count, let next = schedule.next()?.time {
                    try await clock.sleep(until: next)
                }
            }
        }
    }
}

extension PollCommand {
    /// The publisher `--publish` names; an AMQP one connects now, so a bad URL or password stops start-up.
    func makePublisher() async throws -> any Publisher {
        guard publish != "stdout" else { return JSONLinesPublisher.standardOutput }
        let nodes = try amqp.nodes(publish)
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
            url: nodes[0], failoverNodes: Array(nodes.dropFirst()), tls: amqp.tls, exchange: amqp.exchange,
            durableExchange: amqp.exchangeDurable, quorumQueue: quorumQueue, topic: amqp.topic,
            declareQueue: !noDeclareQueue, heartbeatSeconds: amqp.amqpHeartbeat),
            logger: Logger(label: "virtmeter.amqp"))
        try await publisher.connect()
        return publisher
    }
}

import ArgumentParser
import Foundation
import Logging
import VirtMeterAMQP
import VirtMeterCore
import VirtMeterLibvirt

/// `virtmeter benchmark-amqp URL`: samples per second signed, encoded and published with confirms, next to
/// Python's oslo.messaging publishing the same samples.
struct AMQPBenchmarkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "benchmark-amqp",
        abstract: "Measure signing, encoding and publishing samples with confirms, and compare with oslo.messaging.",
        discussion: """
            Makes samples for --domains generated test-driver domains (about 30 samples each), then stamps \
            (signs) and publishes them round after round until --samples were sent, with publisher confirms, \
            to a fresh topic whose <topic>.sample queue is declared as oslo's notifier declares it (and deleted \
            afterwards). With --python (a Python with oslo.messaging, e.g. the virtualenv scripts/test-amqp makes), \
            the first --python-samples of the same samples are signed and published by scripts/oslo-benchmark.py \
            through oslo.messaging's Notifier, and the ratio is printed. Use a test broker, not production.
            """
    )

    @Argument(help: "Broker URL (amqp://user@host:port/vhost); the password as for poll.")
    var url: String

    @Option(help: "Samples to publish from virtmeter.")
    var samples = 200_000

    @Option(help: "Generated domains per round.")
    var domains = 200

    @Option(help: "Samples per message.")
    var batchSize = 50

    @Option(help: ArgumentHelp("A Python with oslo.messaging installed: also run the oslo.messaging peer.",
                               valueName: "path"))
    var python: String?

    @Option(help: ArgumentHelp("The oslo.messaging peer script.", valueName: "path"))
    var pythonScript = "scripts/oslo-benchmark.py"

    @Option(help: "Samples to publish from Python (it is slower; the rate is what is compared).")
    var pythonSamples = 20_000

    @Flag(help: "Declare the benchmark's queue as a quorum queue (durable, with a durable exchange).")
    var quorumQueue = false

    @OptionGroup(title: "AMQP") var amqp: AMQPOptions

    static let secret = "benchmark secret"

    func run() async throws {
        bootstrapLogging(.error)
        try await reportingErrors {
            guard samples > 0, domains > 0, batchSize > 0, pythonSamples > 0 else {
                throw CLIError("--samples, --domains, --batch-size and --python-samples must be positive")
            }
            let brokerURL = try amqp.url(url)
            let (snapshots, previous) = try await Self.snapshots(domains: domains)
            let stamper = SampleStamper(host: "bench-host", signer: SampleSigner(secret: Self.secret))
            let meters = MeterRegistry.builtIn.meters
            var prepared = snapshots.map { stamper.prepare($0) }
            let topic = "virtmeter-bench-\(getpid())"
            let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
                url: brokerURL, tls: amqp.tls, exchange: amqp.exchange, durableExchange: amqp.exchangeDurable,
                quorumQueue: quorumQueue, topic: topic, heartbeatSeconds: amqp.amqpHeartbeat))
            try await publisher.connect()
            var encoder = SampleEncoder(signer: stamper.signer)
            func round() -> SampleRecords {
                var out = RecordWriter(samplesPerRecord: batchSize)
                for (index, snapshot) in snapshots.enumerated() {
                    stamper.write(snapshot, previous: previous[index], meters: meters, prepared: &prepared[index],
                                  encoder: &encoder, to: &out)
                }
                return out.takeAll()
            }
            // Warm-up round, kept for the Python peer.
            let firstRound = round()
            try await publisher.publish(firstRound)

            var sent = 0, stampCPU = 0.0
            let wallStart = SampleClock.monotonic(), cpuStart = BenchmarkCommand.cpuSeconds()
            while sent < samples {
                let stampStart = BenchmarkCommand.cpuSeconds()
                let batch = round()
                stampCPU += BenchmarkCommand.cpuSeconds() - stampStart
                try await publisher.publish(batch)
                sent += batch.sampleCount
            }
            let wall = SampleClock.monotonic() - wallStart, cpu = BenchmarkCommand.cpuSeconds() - cpuStart
            try await publisher.deleteQueue()
            await publisher.close()
            let rate = Double(sent) / wall
            print("virtmeter: \(sent) samples in \(sent / batchSize) messages of \(batchSize), confirms in windows: "
                  + String(format: "%.0f samples/s, %.2f s; CPU %.1f ms per 1,000 samples (signing %.1f ms)",
                           rate, wall, cpu / Double(sent) * 1e6, stampCPU / Double(sent) * 1e6))
            guard let python else {
                print("oslo.messaging: not run (give --python, a Python with oslo.messaging; "
                      + "scripts/test-amqp makes one)")
                return
            }
            let peer = try runPython(python, url: brokerURL, samples: Self.repeated(firstRound, count: pythonSamples))
            let pythonRate = Double(peer.samples) / peer.seconds
            print("oslo.messaging: \(peer.samples) samples in messages of \(batchSize), Notifier.sample: "
                  + String(format: "%.0f samples/s, %.2f s; CPU %.1f ms per 1,000 samples",
                           pythonRate, peer.seconds, peer.cpuSeconds / Double(peer.samples) * 1e6))
            print(String(format: "ratio: virtmeter publishes %.1fx the samples per second of oslo.messaging, "
                         + "with %.1fx less CPU per sample", rate / pythonRate,
                         (peer.cpuSeconds / Double(peer.samples)) / (cpu / Double(sent))))
        }
    }

    /// Two polls of a generated test-driver node: the snapshots and the previous ones (for cpu_util).
    static func snapshots(domains: Int) async throws -> ([DomainSnapshot], [DomainSnapshot?]) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-amqp-bench-\(getpid()).xml")
        try BenchmarkCommand.nodeXML(domains: domains).write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let hypervisor = try LibvirtHypervisor(uri: "test://" + file.path)
        let first = try await hypervisor.poll()
        try await Task.sleep(for: .milliseconds(100))
        let second = try await hypervisor.poll()
        let byUUID = Dictionary(first.map { ($0.uuid, $0) }, uniquingKeysWith: { a, _ in a })
        return (second, second.map { byUUID[$0.uuid] })
    }

    /// `count` JSON lines, taken round after round from `records`' samples.
    static func repeated(_ records: SampleRecords, count: Int) -> [UInt8] {
        let dicts = records.sampleDicts
        guard !dicts.isEmpty else { return [] }
        var out: [UInt8] = []
        for index in 0..<count {
            out += dicts[index % dicts.count]
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    struct PeerResult {
        var samples: Int, seconds: Double, cpuSeconds: Double
    }

    /// Runs the oslo.messaging peer on the JSON lines `lines` (written to a temporary file). The broker URL
    /// with its password goes in the environment, never on a command line.
    private func runPython(_ python: String, url: AMQPURL, samples lines: [UInt8]) throws -> PeerResult {
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("virtmeter-amqp-bench-\(getpid()).jsonl")
        try Data(lines).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [pythonScript]
        var environment = ProcessInfo.processInfo.environment
        func encoded(_ text: String) -> String {
            text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
        }
        environment["VIRTMETER_BENCH_URL"] = "rabbit://\(encoded(url.user)):\(encoded(url.password))@"
            + "\(url.endpoint)/\(url.vhost == "/" ? "" : encoded(url.vhost))"
        environment["VIRTMETER_BENCH_FILE"] = file.path
        environment["VIRTMETER_BENCH_EXCHANGE"] = amqp.exchange
        environment["VIRTMETER_BENCH_TOPIC"] = "virtmeter-bench-py-\(getpid())"
        environment["VIRTMETER_BENCH_BATCH"] = String(batchSize)
        environment["VIRTMETER_BENCH_SECRET"] = Self.secret
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let line = String(data: data, encoding: .utf8)?.split(separator: "\n").last,
              let result = try? JSONValue.parse(String(line)),
              let count = result["samples"]?.doubleValue, let seconds = result["seconds"]?.doubleValue,
              let cpu = result["cpu_seconds"]?.doubleValue
        else { throw CLIError("the oslo.messaging peer \(pythonScript) failed (exit \(process.terminationStatus))") }
        return PeerResult(samples: Int(count), seconds: seconds, cpuSeconds: cpu)
    }
}

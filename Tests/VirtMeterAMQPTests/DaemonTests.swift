import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterAMQP
import VirtMeterCore

/// `virtmeter run` as an operator runs it: virtmeter.yaml + polling.yaml, the libvirt test driver, a real RabbitMQ.
@Suite("virtmeter run: schedules, a real broker, graceful shutdown")
struct DaemonTests {
    @Test("two sources at 1 s and 2 s: the right meters at the right rates, SIGTERM exits 0 with nothing lost")
    func twoSources() async throws {
        let url = try TestBroker.url()
        let topic = uniqueName("vmtest-daemon")
        let polling = try temporaryFile("polling.yaml", """
            ---
            sources:
                - name: fast
                  interval: 1
                  meters:
                    - cpu
                    - memory.usage
                - name: slow
                  interval: 2
                  meters:
                    - vcpus
                    - "power.*"
                    - cpu_l3_cache
            """)
        let config = try temporaryFile("virtmeter.yaml", """
            host: compute-daemon
            libvirt_uri: \(amqpNodeURI)
            polling_file: \(polling.path)
            publishers:
              - type: amqp
                url: amqp://\(url.user)@\(url.endpoint)/
                topic: \(topic)
            log_level: debug
            summary_every_cycles: 2
            state_dir: \(polling.deletingLastPathComponent().path)/state
            """)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: virtmeterBinary)
        process.arguments = ["run", "--config", config.path]
        process.environment = ProcessInfo.processInfo.environment.merging(["VIRTMETER_AMQP_PASSWORD": url.password]) { $1 }
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let collector = ErrorCollector(err.fileHandleForReading)
        let started = SampleClock.monotonic()
        try process.run()
        try await Task.sleep(for: .milliseconds(5500))
        // On a loaded machine the sleep can end late: the cycles expected follow from the time the agent really ran.
        let ran = Int(SampleClock.monotonic() - started)
        process.terminate()   // SIGTERM
        let log = String(decoding: collector.wait(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(log.suffix(2000))")
        #expect(log.contains("cpu_l3_cache"))   // the meter virtmeter lacks is named in a warning

        // What the agent logged as produced: one "cycle done" line per cycle with its sources and sample count.
        var produced = 0, fastCycles = 0, slowCycles = 0
        for line in log.split(separator: "\n") where line.contains("cycle done") {
            let fields = line.split(separator: " ")
            func value(_ key: String) -> Substring? {
                fields.first { $0.hasPrefix(key + "=") }?.dropFirst(key.count + 1)
            }
            produced += value("virtmeter.poll.samples").flatMap { Int($0) } ?? 0
            let sources = value("virtmeter.poll.sources")?.split(separator: ",") ?? []
            if sources.contains("fast") { fastCycles += 1 }
            if sources.contains("slow") { slowCycles += 1 }
        }
        #expect((ran - 1...ran + 1).contains(fastCycles), "fast cycles: \(fastCycles) in \(ran) s")
        #expect((ran / 2 - 1...ran / 2 + 2).contains(slowCycles), "slow cycles: \(slowCycles) in \(ran) s")
        #expect(abs(fastCycles - 2 * slowCycles) <= 1)
        #expect(log.contains("summary"))

        let deliveries = try await drain(url, queue: topic + ".sample")
        var received: [Sample] = []
        for delivery in deliveries {
            received += try NotificationEnvelope.decode(delivery.body).samples().compactMap(\.sample)
        }
        #expect(produced > 0 && received.count == produced, "produced \(produced), received \(received.count)")
        #expect(Set(received.map(\.messageID)).count == received.count)
        let counts = Dictionary(grouping: received, by: \.name).mapValues(\.count)
        // The node file has 4 domains, 2 of them with balloon stats.
        #expect(counts["cpu"] == 4 * fastCycles)
        #expect(counts["memory.usage"] == 2 * fastCycles)
        #expect(counts["vcpus"] == 4 * slowCycles)
        #expect(counts["power.state"] == 4 * slowCycles)
        #expect(Set(counts.keys) == ["cpu", "memory.usage", "vcpus", "power.state"])
        #expect(received.allSatisfy { $0.resourceMetadata["instance_host"] == .string("compute-daemon") })
    }
}

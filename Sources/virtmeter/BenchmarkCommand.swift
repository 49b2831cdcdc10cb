import ArgumentParser
import CLibvirt
import CLibvirtFloor
import Foundation
import Logging
import Synchronization
import VirtMeterAgent
import VirtMeterAMQP
import VirtMeterCore
import VirtMeterLibvirt

/// `virtmeter benchmark`: what the product costs per poll cycle over N test-driver domains, next to the bare libvirt
/// calls. Every row runs in a process of its own, so its peak RSS is its own: the floor (the inspector's libvirt calls
/// made bare in C), a poll cycle alone (core and all meters, samples built and signed), and the whole daemon
/// (`virtmeter run`: poll, spool with the default fsync, publisher with confirms), measured from outside over
/// steady-state cycles.
struct BenchmarkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "benchmark",
        abstract: "Measure the daemon and poll cycles over generated test-driver nodes of N domains beside the floor."
    )

    @Option(help: "Domain counts, comma-separated.")
    var sizes = "100,1000,5000"

    @Option(help: "Measured poll cycles per row (after a warm-up cycle that reads every domain's XML).")
    var cycles = 5

    @Option(help: ArgumentHelp("Broker for the daemon rows (amqp://USER@HOST:PORT/VHOST, password in "
                               + "VIRTMETER_AMQP_PASSWORD); without it the daemon publishes to a file.",
                               valueName: "url"))
    var broker: String?

    @Option(help: ArgumentHelp("Add a row '+N decl': the 10 core meters and N meters declared in YAML (over the "
                               + "state.* fields the test driver returns in bulk); its difference from 'poll core' "
                               + "is what they cost.", valueName: "N"))
    var declared = 0

    @Flag(help: "Skip the daemon rows.")
    var noDaemon = false

    @Flag(help: ArgumentHelp("Add the rows with the Prometheus endpoint on (poll+prom, daemon+prom, scraped once per "
                             + "cycle) and the scrape's time and size."))
    var prometheus = false

    @Flag(help: ArgumentHelp("Add a line 'stamper alone': turning 40 domains' snapshots into signed samples, "
                             + "in-process, the fastest of 3,000 passes. It leaves out everything else, and this "
                             + "machine's noise barely moves it: for comparing two builds' stamping. With it, the "
                             + "signing's cost measured the same way, signed minus unsigned."))
    var stamper = false

    @Option(help: .hidden)
    var child: String?

    static let disks = ["vda", "vdb"]
    static let interfaces = ["tap0"]

    func run() async throws {
        bootstrapLogging(.error)
        try await reportingErrors {
            if let child { return try await runChild(child) }
            let counts = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }), cycles > 0, (0...100).contains(declared) else {
                throw CLIError("--sizes needs positive counts, --cycles a positive number, --declared 0 to 100")
            }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-bench-\(getpid())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            print("per poll cycle over N test-driver domains (nova metadata, 2 disks, 1 interface, balloon stats); "
                  + "each row a process of its own;")
            print("CPU = user+system of the whole process, every thread (exited ones too); RSS = the process's peak; "
                  + "samples signed (HMAC-SHA256)")
            print("rows: floor = the same libvirt calls bare in C; poll core/all = one cycle, 10 core or all meters "
                  + "(unsigned: all meters, no signature); "
                  + "daemon = virtmeter run, every meter: poll, spool (fsync per cycle), "
                  + (broker == nil ? "file publisher" : "AMQP with confirms"))
            print("domains  row        wall       cpu   samples  cpu/sample  peak-rss  cpu/floor  rss-floor")
            for count in counts {
                let node = directory.appendingPathComponent("node-\(count).xml")
                try Self.nodeXML(domains: count).write(to: node, atomically: true, encoding: .utf8)
                let floor = try childRow("floor", node: node)
                var rows = [("floor", floor)]
                rows.append(("poll core", try childRow("core", node: node)))
                if declared > 0 { rows.append(("+\(declared) decl", try childRow("declared", node: node))) }
                let all = try childRow("all", node: node), unsigned = try childRow("unsigned", node: node)
                rows += [("poll all", all), ("unsigned", unsigned)]
                if prometheus { rows.append(("poll+prom", try childRow("prom", node: node))) }
                if !noDaemon {
                    rows.append(("daemon", try daemonRow(node: node, domains: count, directory: directory)))
                    if prometheus {
                        rows.append(("daemon+prom", try daemonRow(node: node, domains: count, directory: directory,
                                                                  prometheus: true)))
                    }
                    try await deleteDaemonQueue()
                }
                for (label, row) in rows { print(row.line(domains: count, label: label, floor: floor)) }
                print(String(format: "%7d  signing (poll all - unsigned): %.2f us per sample", count,
                             (all.cpuMs - unsigned.cpuMs) * 1000 / Double(max(1, all.samples))))
                if stamper {
                    let alone = try childRow("stamper", node: node)
                    let bare = try childRow("stamper-unsigned", node: node)
                    let perSample = { (row: Row) in row.cpuMs * 1000 / Double(max(1, row.samples)) }
                    let signing = perSample(alone) - perSample(bare)
                    print(String(format: "%7d  stamper alone: %.3f us per sample (%d samples of 40 domains, the "
                                 + "fastest of %d passes); unsigned %.3f, so signing %.3f", count, perSample(alone),
                                 alone.samples, Self.stamperPasses, perSample(bare), signing))
                }
                for (label, row) in rows {
                    guard let ms = row.scrapeMs, let bytes = row.scrapeBytes else { continue }
                    print(String(format: "%7d  %@  GET /metrics: %.1f ms (median of the scrapes, one per cycle), "
                                 + "%.2f MiB, %d ceilometer series", count, label, ms,
                                 Double(bytes) / 1_048_576, row.scrapeSeries ?? 0))
                }
                fflush(nil)
            }
        }
    }

    /// One row's figures.
    struct Row: Codable {
        var wallMs: Double
        var cpuMs: Double
        var samples: Int
        var peakRSSMiB: Double
        /// With the Prometheus endpoint: a scrape's median time, its size and its ceilometer series.
        var scrapeMs: Double?
        var scrapeBytes: Int?
        var scrapeSeries: Int?

        func line(domains: Int, label: String, floor: Row) -> String {
            let perSample = samples > 0 ? String(format: "%.2f us", cpuMs * 1000 / Double(samples)) : "-"
            let columns = [
                String(domains), label, String(format: "%.1f ms", wallMs), String(format: "%.1f ms", cpuMs),
                String(samples), perSample, String(format: "%.1f MiB", peakRSSMiB),
                String(format: "%.1fx", cpuMs / max(floor.cpuMs, 0.001)),
                String(format: "%+.1f MiB", peakRSSMiB - floor.peakRSSMiB),
            ]
            let widths = [7, -9, 9, 9, 9, 11, 9, 10, 10]
            return zip(columns, widths).map { column, width in
                let pad = String(repeating: " ", count: max(0, abs(width) - column.count))
                return width < 0 ? column + pad : pad + column
            }.joined(separator: "  ")
        }
    }

    // MARK: - Rows measured in a child process

    /// Runs `virtmeter benchmark --child KIND:NODE` and reads its row.
    private func childRow(_ kind: String, node: URL) throws -> Row {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["benchmark", "--cycles", String(cycles), "--declared", String(declared),
                             "--child", kind + ":" + node.path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let row = try? JSONDecoder().decode(Row.self, from: data) else {
            throw CLIError("benchmark row \(kind) failed (exit \(process.terminationStatus))")
        }
        return row
    }

    private func runChild(_ spec: String) async throws {
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw CLIError("bad --child") }
        let uri = "test://" + parts[1]
        let row: Row
        switch parts[0] {
        case "floor": row = try floorRow(uri: uri)
        case "core": row = try await pollRow(uri: uri, meters: InstanceMeters.all)
        case "unsigned": row = try await pollRow(uri: uri, meters: MeterRegistry.builtIn.meters, secret: "")
        case "declared": row = try await pollRow(uri: uri, meters: InstanceMeters.all + Self.declaredMeters(declared))
        case "prom": row = try await pollRow(uri: uri, meters: MeterRegistry.builtIn.meters, prometheus: true)
        case "stamper": row = try await stamperRow(uri: uri, secret: "bench secret")
        case "stamper-unsigned": row = try await stamperRow(uri: uri, secret: "")
        default: row = try await pollRow(uri: uri, meters: MeterRegistry.builtIn.meters)
        }
        FileHandle.standardOutput.write(try JSONEncoder().encode(row))
    }

    /// One poll cycle's figures; `secret` "" writes the samples unsigned (the signing's cost is the difference). With
    /// `prometheus`, each cycle also makes the endpoint's exposition, as `virtmeter run` does with it on.
    private func pollRow(uri: String, meters: [any Meter], secret: String = "bench secret",
                         prometheus: Bool = false) async throws -> Row {
        let (hypervisor, stamper) = try Self.setUp(uri: uri, meters: meters, secret: secret)
        let exposition = prometheus ? CeilometerExposition(stamper: stamper) : nil
        var poller = Poller(hypervisor: exposition?.observing(hypervisor) ?? hypervisor, stamper: stamper,
                            logger: Logger(label: "virtmeter.bench"))
        let group = PollingGroup(name: "all", meters: meters)
        _ = try await poller.cycle([group]) { _ in }
        exposition?.cycleCompleted([group])
        var times: [(Double, Double)] = [], samples = 0
        for _ in 0..<cycles {
            times.append(try await Self.timed {
                samples = try await poller.cycle([group]) { _ in }.samples
                exposition?.cycleCompleted([group])
            })
        }
        return Row(wallMs: Self.median(times.map(\.0)) * 1000, cpuMs: Self.median(times.map(\.1)) * 1000,
                   samples: samples, peakRSSMiB: Self.peakRSSMiB())
    }

    /// What a poll row and the stamper row read with: the hypervisor, asked for what `meters` read, and a stamper
    /// signing with `secret` ("": unsigned).
    private static func setUp(uri: String, meters: [any Meter], secret: String) throws
        -> (LibvirtHypervisor, SampleStamper) {
        let hypervisor = try LibvirtHypervisor(uri: uri)
        hypervisor.request(StatsFieldRequest(meters: meters))
        return (hypervisor, SampleStamper(host: "bench-host", signer: SampleSigner(secret: secret)))
    }

    static let stamperPasses = 3_000

    /// The stamper alone over the first 40 domains' snapshots (every meter, signed unless `secret` is empty, the
    /// second poll: with rates), the fastest of `stamperPasses` passes: its wall time as `cpuMs` (one thread, nothing
    /// else running in it).
    private func stamperRow(uri: String, secret: String) async throws -> Row {
        let meters = MeterRegistry.builtIn.meters
        let (hypervisor, stamper) = try Self.setUp(uri: uri, meters: meters, secret: secret)
        let earlier = try await hypervisor.poll()
        let snapshots = Array(try await hypervisor.poll().prefix(40))
        let previous = snapshots.map { now in earlier.first { $0.uuid == now.uuid } }
        var encoder = SampleEncoder(signer: stamper.signer)
        var prepared = snapshots.map { stamper.prepare($0) }
        var writer = RecordWriter(samplesPerRecord: 50, capacity: 4 << 20)
        var fastest = Double.infinity, samples = 0
        for _ in 0..<Self.stamperPasses {
            writer.recycle(writer.takeAll())
            let start = SampleClock.monotonic()
            samples = 0
            for index in snapshots.indices {
                samples += stamper.write(snapshots[index], previous: previous[index], meters: meters,
                                         prepared: &prepared[index], encoder: &encoder, to: &writer).written
            }
            fastest = min(fastest, SampleClock.monotonic() - start)
        }
        return Row(wallMs: fastest * 1000, cpuMs: fastest * 1000, samples: samples, peakRSSMiB: Self.peakRSSMiB())
    }

    /// The floor: the same libvirt calls, bare.
    private func floorRow(uri: String) throws -> Row {
        guard let conn = virConnectOpenReadOnly(uri) else { throw CLIError("floor: cannot open \(uri)") }
        defer { virConnectClose(conn) }
        var times: [(Double, Double)] = []
        let disks = Self.disks.map { strdup($0) }, interfaces = Self.interfaces.map { strdup($0) }
        defer { (disks + interfaces).forEach { free($0) } }
        var diskPointers = disks.map { UnsafePointer($0) }, interfacePointers = interfaces.map { UnsafePointer($0) }
        for _ in 0...cycles {
            var checksum: UInt64 = 0
            let wall = SampleClock.monotonic(), cpu = Self.cpuSeconds()
            let read = virtmeter_floor_cycle(conn, &diskPointers, Int32(disks.count), &interfacePointers,
                                             Int32(interfaces.count), &checksum)
            guard read >= 0 else { throw CLIError("floor: the libvirt calls failed") }
            times.append((SampleClock.monotonic() - wall, Self.cpuSeconds() - cpu))
        }
        times.removeFirst()
        return Row(wallMs: Self.median(times.map(\.0)) * 1000, cpuMs: Self.median(times.map(\.1)) * 1000,
                   samples: 0, peakRSSMiB: Self.peakRSSMiB())
    }

    // MARK: - The daemon

    /// Runs `virtmeter run` on the node with every meter and measures, from outside, the CPU it used (from
    /// /proc/PID/stat: every thread, exited ones too) between the end of its second cycle and the end of `cycles`
    /// cycles later, and its peak RSS (VmHWM). Each interval holds one cycle's polling and the previous cycle's
    /// publishing: the whole pipeline in steady state.
    /// With `prometheus`, the daemon serves /metrics, scraped (with curl) once after each cycle.
    private func daemonRow(node: URL, domains: Int, directory: URL, prometheus: Bool = false) throws -> Row {
        let interval = max(1, Int((Double(domains) / 250).rounded(.up)))
        let measured = domains <= 100 ? max(cycles, 10) : cycles
        let state = directory.appendingPathComponent("state-\(domains)")
        let polling = directory.appendingPathComponent("polling-\(domains).yaml")
        let config = directory.appendingPathComponent("virtmeter-\(domains).yaml")
        try "sources:\n  - name: all\n    interval: \(interval)\n    meters: ['*']\n"
            .write(to: polling, atomically: true, encoding: .utf8)
        let publisher = broker.map { "  - {type: amqp, url: '\($0)', topic: \(daemonTopic)}\n" }
            ?? "  - {type: file, path: '\(directory.path)/published-\(domains).jsonl'}\n"
        try ("libvirt_uri: 'test://\(node.path)'\npolling_file: '\(polling.path)'\nstate_dir: '\(state.path)'\n"
             + "log_level: debug\nsummary_every_cycles: 0\nspool_cap_mib: 4096\nhost: bench-host\n"
             + "publishers:\n" + publisher)
            .write(to: config, atomically: true, encoding: .utf8)
        let secret = directory.appendingPathComponent("secret")
        try "bench secret\n".write(to: secret, atomically: true, encoding: .utf8)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["run", "--config", config.path, "--secret-file", secret.path]
        let port = prometheus ? freePort() : 0
        if prometheus { process.arguments! += ["--prometheus-listen", "127.0.0.1:\(port)"] }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: state)
            try? FileManager.default.removeItem(atPath: "\(directory.path)/published-\(domains).jsonl")
        }
        let pid = process.processIdentifier
        // Marks taken as each "cycle done" line arrives: the daemon's CPU then, and the cycle's samples.
        let marks = Mutex<[(cpu: Double, samples: Int)]>([])
        let reader = Thread {
            var pending = Data()
            while true {
                let chunk = errors.fileHandleForReading.availableData
                if chunk.isEmpty { return }
                pending += chunk
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending = Data(pending[(newline + 1)...])
                    guard line.contains("cycle done"), let cpu = Self.processCPUSeconds(pid) else { continue }
                    let samples = line.split(separator: " ").first { $0.hasPrefix("virtmeter.poll.samples=") }
                        .flatMap { Int($0.dropFirst("virtmeter.poll.samples=".count)) } ?? 0
                    marks.withLock { $0.append((cpu, samples)) }
                }
            }
        }
        reader.start()
        let needed = 2 + measured
        let deadline = SampleClock.monotonic() + Double(needed * interval) + 120
        var scrapes: [(ms: Double, bytes: Int, series: Int)] = [], scraped = 0
        while marks.withLock({ $0.count }) < needed {
            guard process.isRunning, SampleClock.monotonic() < deadline else {
                throw CLIError("the daemon did not complete \(needed) cycles (see virtmeter run's log)")
            }
            let done = marks.withLock { $0.count }
            if prometheus, done > scraped {
                scraped = done
                if done >= 2, let scrape = Self.scrape("http://127.0.0.1:\(port)/metrics") { scrapes.append(scrape) }
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let rss = Self.peakRSSMiB(pid)
        let taken = marks.withLock { Array($0.prefix(needed)) }
        let cpu = (taken[needed - 1].cpu - taken[1].cpu) / Double(measured)
        let samples = taken[2...].reduce(0) { $0 + $1.samples } / measured
        var row = Row(wallMs: Double(interval) * 1000, cpuMs: cpu * 1000, samples: samples, peakRSSMiB: rss)
        if !scrapes.isEmpty {
            row.scrapeMs = Self.median(scrapes.map(\.ms))
            row.scrapeBytes = scrapes.last!.bytes
            row.scrapeSeries = scrapes.last!.series
        }
        return row
    }

    /// The daemon rows' topic on the broker: the daemon declares its queue (as ceilometer's consumers have one), which
    /// keeps what it published.
    private var daemonTopic: String { "virtmeter-bench-\(getpid())" }

    /// Deletes the queue the daemon rows filled, so that a benchmark leaves nothing on the broker.
    private func deleteDaemonQueue() async throws {
        guard let broker else { return }
        let url = try AMQPOptions.nodes(broker, passwordFile: nil, option: "--broker")[0]
        let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(url: url, topic: daemonTopic))
        try await publisher.connect()
        try await publisher.deleteQueue()
        await publisher.close()
    }

    /// One GET with curl: its time in ms, the body's size and its `ceilometer_` series lines.
    static func scrape(_ url: String) -> (ms: Double, bytes: Int, series: Int)? {
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-scrape-\(getpid())")
        defer { try? FileManager.default.removeItem(at: body) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-s", "-o", body.path, "-w", "%{time_total} %{size_download}", "--max-time", "30", url]
        let out = Pipe()
        process.standardOutput = out
        guard (try? process.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let parts = String(decoding: data, as: UTF8.self).split(separator: " ")
        guard process.terminationStatus == 0, parts.count == 2, let seconds = Double(parts[0]),
              let bytes = Int(parts[1]), let text = try? Data(contentsOf: body)
        else { return nil }
        let series = text.split(separator: 0x0A).filter { $0.starts(with: Array("ceilometer_".utf8)) }.count
        return (seconds * 1000, bytes, series)
    }

    /// `count` declared meters, through the YAML parser, over the two fields libvirt 9's test driver returns in bulk
    /// (`state.state`, `state.reason`): gauges, a scaled one and a delta, one sample per domain each.
    static func declaredMeters(_ count: Int) throws -> [any Meter] {
        var yaml = "meters:\n"
        for index in 0..<count {
            let field = index % 2 == 0 ? "state.state" : "state.reason"
            let type = index % 3 == 2 ? "delta" : "gauge"
            let scale = index % 4 == 3 ? "\n    scale: 1/1024" : ""
            yaml += "  - name: bench.declared.\(index)\n    type: \(type)\n    unit: state\n"
                + "    summary: benchmark meter \(index)\n    field: \(field)\(scale)\n"
        }
        return try DeclaredMeters.parse(yaml, file: "benchmark").meters
    }

    // MARK: - Measuring

    static func timed(_ body: () async throws -> Void) async throws -> (Double, Double) {
        let wall = SampleClock.monotonic(), cpu = cpuSeconds()
        try await body()
        return (SampleClock.monotonic() - wall, cpuSeconds() - cpu)
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// User + system CPU time of this process (all threads), in seconds.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// User + system CPU time of process `pid` (every thread, exited ones included), from /proc/PID/stat.
    static func processCPUSeconds(_ pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14 and stime 15 (1-based over the whole line).
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// This process's peak resident set so far, in MiB.
    static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    /// Process `pid`'s peak resident set (VmHWM), in MiB.
    static func peakRSSMiB(_ pid: Int32) -> Double {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
        let kib = line.flatMap { Double($0.split(separator: " ", omittingEmptySubsequences: true)[1]) } ?? 0
        return kib / 1024
    }

    /// A test-driver node with `domains` running domains, each with nova metadata, two disks and one interface.
    static func nodeXML(domains: Int) -> String {
        var xml = "<node>\n<cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>"
            + "<active>2</active><mhz>2400</mhz><model>x86_64</model></cpu>\n<memory>1073741824</memory>\n"
        for i in 0..<domains {
            let uuid = String(format: "b0b0b0b0-0000-4000-8000-%012x", i)
            let mac = String(format: "fa:16:3e:%02x:%02x:%02x", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
            xml += """
            <domain type='test'><name>instance-\(String(format: "%08x", i))</name><uuid>\(uuid)</uuid>
            <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
            <nova:name>bench-\(i)</nova:name><nova:flavor name="m1.small" id="2"><nova:memory>512</nova:memory>
            <nova:disk>1</nova:disk><nova:swap>0</nova:swap><nova:ephemeral>0</nova:ephemeral><nova:vcpus>1</nova:vcpus>
            </nova:flavor><nova:owner><nova:user uuid="u-\(i % 7)">u</nova:user>
            <nova:project uuid="p-\(i % 5)">p</nova:project></nova:owner>
            <nova:root type="image" uuid="img-1"/></nova:instance></metadata>
            <memory unit='MiB'>512</memory><currentMemory unit='MiB'>512</currentMemory><vcpu>1</vcpu>
            <os><type arch='x86_64'>hvm</type></os><devices>
            <disk type='file' device='disk'><source file='/guest/\(i)-a.img'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><source file='/guest/\(i)-b.img'/><target dev='vdb' bus='virtio'/></disk>
            <interface type='bridge'><mac address='\(mac)'/>
            <source bridge='br0'/><target dev='tap0'/><model type='virtio'/></interface>
            <memballoon model='virtio'><stats period='10'/></memballoon></devices></domain>

            """
        }
        return xml + "</node>\n"
    }
}

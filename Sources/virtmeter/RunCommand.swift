import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VirtMeterAgent
import VirtMeterAMQP
import VirtMeterCore
import VirtMeterLibvirt
import VirtMeterPrometheus

/// `virtmeter run`: the long-running agent. Polls on polling.yaml's schedules, publishes to the configured
/// publishers, reloads polling.yaml on SIGHUP, shuts down gracefully on SIGTERM and SIGINT.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the polling agent (virtmeter.yaml + polling.yaml) until SIGTERM or SIGINT; "
            + "SIGHUP reloads polling.yaml and the declared meters."
    )

    @Option(help: ArgumentHelp("virtmeter.yaml (default: \(AgentConfiguration.defaultFile) when it exists, "
                               + "else built-in defaults).", valueName: "path"))
    var config: String?

    @Option(help: ArgumentHelp("polling.yaml in Ceilometer's format (overrides the config's polling_file).",
                               valueName: "path"))
    var polling: String?

    @Option(name: .customLong("connect"), help: "libvirt connection URI (overrides the config's libvirt_uri).")
    var uri: String?

    @Option(help: ArgumentHelp("'stdout', or an amqp:// or amqps:// broker URL or a cluster's nodes "
                               + "(amqp://u@h1:5672,u@h2:5672/vhost) (overrides the config's publishers).",
                               valueName: "stdout|url"))
    var publish: String?

    @Option(help: ArgumentHelp("File holding the telemetry secret (overrides the config's secret_file).",
                               valueName: "path"))
    var secretFile: String?

    @Option(help: "Host name for the samples' metadata (overrides the config's host).")
    var host: String?

    @Option(help: "Log level on stderr (overrides the config's log_level).")
    var logLevel: Logger.Level?

    @Option(help: ArgumentHelp("Directory for virtmeter's state, the spool among it "
                               + "(overrides the config's state_dir).",
                               valueName: "path"))
    var stateDir: String?

    @Option(name: .customLong("prometheus-listen"),
            help: ArgumentHelp("Serve /metrics and /healthz on HOST:PORT ([::1]:9702 for IPv6); repeatable "
                               + "(replaces the config's prometheus.listen).", valueName: "host:port"))
    var prometheusListen: [String] = []

    func run() async throws {
        // glibc gives each thread that allocates an arena of its own, up to 8 per core, and keeps what they freed:
        // the agent's buffers move between a few threads, so two arenas keep its peak RSS down (about 5 MiB at 1,000
        // domains, measured with `virtmeter benchmark`) at no cost in CPU.
        _ = glibcMallopt(-8 /* M_ARENA_MAX */, 2)
        try await reportingErrors {
            let settings = try resolvedConfiguration()
            bootstrapLogging(settings.logLevel)
            try await runAgent(settings)
        }
    }

    /// The configuration file (or defaults), then the environment, then the flags of this run.
    func resolvedConfiguration() throws -> AgentConfiguration {
        var settings = AgentConfiguration()
        if let file = config ?? (FileManager.default.fileExists(atPath: AgentConfiguration.defaultFile)
                                 ? AgentConfiguration.defaultFile : nil) {
            settings = try AgentConfiguration.load(file: file)
        }
        settings.applyEnvironment()
        if let polling { settings.pollingFile = polling }
        if let uri { settings.libvirtURI = uri }
        if let secretFile { settings.secretFile = secretFile }
        if let host { settings.host = host }
        if let logLevel { settings.logLevel = logLevel }
        if let stateDir { settings.stateDirectory = stateDir }
        if !prometheusListen.isEmpty {
            for address in prometheusListen where PrometheusSettings.hostAndPort(address) == nil {
                throw CLIError("--prometheus-listen: '\(address)' is not HOST:PORT (an IPv6 address in brackets: "
                               + "[::1]:9702)")
            }
            var prometheus = settings.prometheus ?? PrometheusSettings(listen: [])
            prometheus.listen = prometheusListen
            settings.prometheus = prometheus
        }
        if let publish {
            if publish == "stdout" { settings.publishers = [.stdout] } else { settings.overrideBroker(publish) }
        }
        return settings
    }

    private func runAgent(_ settings: AgentConfiguration) async throws {
        let logger = Logger(label: "virtmeter")
        let pollingFile = settings.pollingFile, metersDirectory = settings.metersDirectory
        // Declared meters first (polling.yaml selects them by name), then polling.yaml: all of it loads, or a reload
        // keeps what is in use.
        let loadPolling: @Sendable () throws -> PollingConfiguration = {
            let registry = try metersDirectory.map { try DeclaredMeters.load(directory: $0).registry() } ?? .builtIn
            guard let pollingFile else { return .builtInDefault(registry: registry) }
            return try PollingConfiguration.load(file: pollingFile, registry: registry)
        }
        let polling = try loadPolling()
        for warning in polling.warnings {
            logger.warning("polling.yaml", metadata: ["virtmeter.config.warning": "\(warning)"])
        }

        // The connection opens at the first cycle, and is tried again until libvirt answers: the agent may start
        // before libvirtd. Each libvirt call gets a deadline that fits the shortest interval.
        let shortest = polling.sources.filter { !$0.meters.isEmpty }.map(\.interval).min() ?? 300
        let hypervisor = try LibvirtHypervisor(
            uri: settings.libvirtURI, callTimeout: LibvirtHypervisor.callTimeout(interval: shortest), connectNow: false,
            options: settings.inspection, logger: Logger(label: "virtmeter.libvirt"))
        // The bulk call reads what the polled declared meters need, from now and after every reload.
        let requestFields: @Sendable (PollingConfiguration) -> Void = { polling in
            hypervisor.request(StatsFieldRequest(meters: polling.sources.flatMap(\.meters)))
        }
        requestFields(polling)
        let stamper = SampleStamper(host: settings.host, signer: try loadSigner(settings.secretFile))
        var publishers: [any Publisher] = []
        for publisher in settings.publishers {
            publishers.append(try await makePublisher(publisher))
        }
        let stats = AgentStats()
        let spool: Spool
        do {
            spool = try Spool(configuration: settings.spool, logger: Logger(label: "virtmeter.spool"))
        } catch {
            throw CLIError("spool: \(error)")
        }
        // The Prometheus endpoint (opt-in) and systemd's notifications (under Type=notify): without either, nothing
        // listens to the cycles.
        let notifier = SystemdNotifier()
        var endpoint: PrometheusEndpoint?
        var endpointServices: [any Service] = []
        if let prometheus = settings.prometheus {
            let server = PrometheusEndpoint(settings: prometheus, stamper: stamper, interval: shortest, spool: spool,
                                            notifier: notifier, version: VirtMeter.version)
            endpointServices = try server.services(prometheus, logger: Logger(label: "virtmeter.prometheus"))
            endpoint = server
        }
        let vitals = endpoint?.vitals ?? notifier.map {
            AgentVitals(exposition: nil, metrics: nil, health: AgentHealth(limitIntervals: 3, interval: shortest),
                        notifier: $0)
        }
        let pollService = PollService(
            hypervisor: hypervisor, stamper: stamper, samplesPerRecord: settings.batchSize, polling: polling,
            loadPolling: loadPolling, spool: spool, stats: stats, summaryEveryCycles: settings.summaryEveryCycles,
            retry: Backoff(initial: settings.retryInitial, maximum: settings.retryMaximum),
            domainsNotAnswering: { hypervisor.lastCounters.notAnswering }, reloaded: requestFields, vitals: vitals,
            logger: Logger(label: "virtmeter.poll"))
        let publishService = PublishService(
            spool: spool, publishers: publishers, stats: stats,
            backoff: Backoff(initial: settings.retryInitial, maximum: settings.retryMaximum), vitals: vitals,
            logger: Logger(label: "virtmeter.publish"))
        let stopped = Once()
        let logStopped: @Sendable () -> Void = {
            guard stopped.first() else { return }
            let counters = stats.snapshot, spooled = spool.currentCounters
            logger.info("virtmeter stopped", metadata: [
                "virtmeter.agent.cycles": "\(counters.cycles)",
                "virtmeter.agent.samples_produced": "\(counters.samplesProduced)",
                "virtmeter.agent.samples_published": "\(counters.samplesPublished)",
                "virtmeter.agent.samples_lost": "\(spooled.lostSamples)",
                "virtmeter.agent.spool_records": "\(spooled.pendingRecords)",
            ])
        }
        let backstop = ShutdownBackstop(seconds: settings.shutdownTimeout + 0.5) {
            logger.warning("shutdown timeout reached: leaving what is still running; the spool keeps the rest")
            logStopped()
        }
        // Graceful shutdown runs in reverse order: the backstop's timer, the reload listener, the Prometheus endpoint,
        // then polling (finishing its cycle and the queue), then publishing (draining the queue and closing the
        // publishers).
        var configuration = ServiceGroupConfiguration(
            services: [
                .init(service: publishService, successTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: pollService, successTerminationBehavior: .gracefullyShutdownGroup),
            ] + endpointServices.map { .init(service: $0, successTerminationBehavior: .ignore) } + [
                .init(service: ReloadOnHangup(pollService), successTerminationBehavior: .ignore),
                .init(service: backstop, successTerminationBehavior: .ignore),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = .milliseconds(Int64(settings.shutdownTimeout * 1000))
        // Never a fatal error on the way out: what cannot be cancelled (a libvirt call, a broker that stopped reading)
        // is left behind by the backstop, and what is unconfirmed stays in the spool for the next start.
        configuration.maximumCancellationDuration = nil
        logger.info("virtmeter started", metadata: [
            "virtmeter.agent.libvirt": "\(settings.libvirtURI)",
            "virtmeter.agent.sources": "\(polling.sources.map(\.name))",
            "virtmeter.agent.publishers": "\(publishers.count)",
            "virtmeter.agent.prometheus": "\(settings.prometheus?.listen ?? [])",
        ])
        try await ServiceGroup(configuration: configuration).run()
        logStopped()
    }

    /// A publisher from its settings; an AMQP one connects now, so a bad URL or password stops start-up.
    private func makePublisher(_ settings: PublisherSettings) async throws -> any Publisher {
        switch settings {
        case .stdout:
            return JSONLinesPublisher.standardOutput
        case .file(let path):
            do {
                return try JSONLinesPublisher(appendingTo: path)
            } catch {
                throw CLIError("publisher file: cannot append to \(path): \(error.reason)")
            }
        case .amqp(let amqp):
            let nodes = try AMQPOptions.nodes(amqp.url, passwordFile: amqp.passwordFile,
                                              option: "publisher amqp: password_file")
            let publisher = AMQPPublisher(configuration: AMQPPublisherConfiguration(
                url: nodes[0], failoverNodes: Array(nodes.dropFirst()), shuffleNodes: amqp.shuffleNodes,
                tls: AMQPTLSOptions(caFile: amqp.caFile, certFile: amqp.certFile, keyFile: amqp.keyFile,
                                    verifyHostname: amqp.verifyHostname),
                exchange: amqp.exchange, durableExchange: amqp.exchangeDurable, quorumQueue: amqp.quorumQueue,
                topic: amqp.topic, declareQueue: amqp.declareQueue, heartbeatSeconds: amqp.heartbeatSeconds),
                logger: Logger(label: "virtmeter.amqp"))
            do {
                try await publisher.connect()
            } catch {
                guard error.isOutage else { throw error }
                // Unreachable is not wrong: start anyway, the spool keeps the samples until the broker is back.
                Logger(label: "virtmeter.amqp").warning(
                    "broker unreachable at start-up: samples are spooled until it is",
                    metadata: ["virtmeter.amqp.error": "\(error)"])
            }
            return publisher
        }
    }
}

/// Ends the process with status 0 once `seconds` have passed since the graceful shutdown began, whatever is still
/// stuck (a libvirt call, a broker that stopped reading): the shutdown has had its time, and everything unconfirmed is
/// safe in the spool (a `kill -9` loses nothing either). The last service in the group, so the first to hear of the
/// shutdown.
struct ShutdownBackstop: Service {
    let seconds: Double
    let last: @Sendable () -> Void

    func run() async throws {
        guard (try? await gracefulShutdown()) != nil else { return }
        let last = self.last
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
            last()
            exit(0)
        }
    }
}

/// True the first time only.
final class Once: Sendable {
    private let done = Atomic(false)

    func first() -> Bool { !done.exchange(true, ordering: .acquiringAndReleasing) }
}

/// glibc's `mallopt` (malloc.h is not in Swift's Glibc module).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

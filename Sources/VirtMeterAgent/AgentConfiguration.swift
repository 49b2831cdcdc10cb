import Foundation
import Logging
import VirtMeterCore

/// Settings of an AMQP publisher as virtmeter.yaml gives them; the executable turns them into a connection.
package struct AMQPPublisherSettings: Sendable, Equatable {
    /// `amqp://user@host:port/vhost` or `amqps://...`, or a cluster's nodes in oslo's form
    /// (`amqp://u@h1:5672,u@h2:5673/vhost`; a YAML list arrives joined with commas); the password belongs in
    /// `passwordFile`, not here.
    package var url: String
    package var passwordFile: String?
    /// Whether the nodes' order is shuffled once at start (else they are tried in the order given).
    package var shuffleNodes = false
    package var exchange = CeilometerAMQP.exchange
    package var exchangeDurable = CeilometerAMQP.durableExchange
    /// Whether `<topic>.sample` is declared as a quorum queue (with a durable exchange), as oslo's
    /// `rabbit_quorum_queue`.
    package var quorumQueue = false
    package var topic = CeilometerAMQP.topic
    package var declareQueue = true
    package var caFile: String?
    package var certFile: String?
    package var keyFile: String?
    package var verifyHostname = true
    package var heartbeatSeconds = CeilometerAMQP.heartbeatSeconds

    package init(url: String) { self.url = url }
}

/// Where samples go.
package enum PublisherSettings: Sendable, Equatable {
    case amqp(AMQPPublisherSettings)
    case stdout
    /// JSON lines appended to a file.
    case file(path: String)
}

/// The opt-in Prometheus endpoint of `virtmeter run` (virtmeter.yaml's `prometheus:`).
package struct PrometheusSettings: Sendable, Equatable {
    /// `HOST:PORT` addresses to listen on (`127.0.0.1:9702`, `[::1]:9702`).
    package var listen: [String]
    /// PEM certificate (chain) and private key: with both, the endpoint serves HTTPS only.
    package var certFile: String?
    package var keyFile: String?
    /// `/healthz` answers 503 once libvirt was unreachable, or no cycle completed, for longer than this many of the
    /// shortest polling interval.
    package var healthzIntervals = 3

    package init(listen: [String]) { self.listen = listen }

    /// The host and port of a `listen` address, or nil when it is not `HOST:PORT` (an IPv6 host in brackets).
    package static func hostAndPort(_ address: String) -> (host: String, port: Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), host.count > 2 else { return nil }
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            return nil
        }
        return host.isEmpty ? nil : (host, port)
    }
}

/// virtmeter.yaml: everything `virtmeter run` needs. Every key has a default, so no file at all is a valid setup.
package struct AgentConfiguration: Sendable, Equatable {
    /// This compute host's name, put in the samples' metadata.
    package var host = ProcessInfo.processInfo.hostName
    package var libvirtURI = "qemu:///system"
    /// polling.yaml; nil means the built-in default (every meter every 300 s).
    package var pollingFile: String?
    /// Directory of `*.yaml` files declaring meters over libvirt's bulk stats; nil: built-in meters only.
    package var metersDirectory: String?
    /// The telemetry secret that signs samples; nil means unsigned samples.
    package var secretFile: String?
    package var publishers: [PublisherSettings] = [.stdout]
    /// At most this many samples per published message.
    package var batchSize = 50
    package var logLevel = Logger.Level.info
    /// Seconds that a shutdown waits for the broker to confirm what was handed over.
    package var shutdownTimeout = 10.0
    /// An info summary every this many cycles (0: never).
    package var summaryEveryCycles = 10
    /// Where virtmeter keeps its state: the spool lives in `<state_dir>/spool`. systemd's StateDirectory= sets
    /// $STATE_DIRECTORY, which is the default when present.
    package var stateDirectory = ProcessInfo.processInfo.environment["STATE_DIRECTORY"] ?? "/var/lib/virtmeter"
    /// Largest size of the spool in MiB; beyond it the oldest samples are dropped (counted, logged).
    package var spoolCapMiB = 256
    package var spoolFsync = FsyncPolicy.batch
    /// Seconds before the first retry of a failed delivery, and the longest wait between retries.
    package var retryInitial = 0.5
    package var retryMaximum = 30.0
    /// Which domains are sampled and what is filled in (`sample_shut_off_domains`,
    /// `user_and_project_names_from_nova`, `domains_without_nova_metadata`).
    package var inspection = InspectionOptions()
    /// The Prometheus endpoint; nil (the default): none.
    package var prometheus: PrometheusSettings?

    /// The default configuration file.
    package static let defaultFile = "/etc/virtmeter/virtmeter.yaml"
    /// The environment variables that override the file (for containers).
    package static let brokerURLVariable = "VIRTMETER_AMQP_URL"
    package static let secretFileVariable = "VIRTMETER_SECRET_FILE"

    static let topLevelKeys = ["host", "libvirt_uri", "polling_file", "meters_dir", "secret_file", "publishers",
                               "batch_size", "log_level", "shutdown_timeout", "summary_every_cycles", "state_dir",
                               "spool_cap_mib", "spool_fsync", "retry_initial", "retry_max", "sample_shut_off_domains",
                               "user_and_project_names_from_nova", "domains_without_nova_metadata", "prometheus"]
    static let prometheusKeys = ["listen", "cert_file", "key_file", "healthz_intervals"]
    static let amqpKeys = ["type", "url", "password_file", "shuffle_nodes", "exchange", "exchange_durable",
                           "quorum_queue", "topic", "declare_queue", "ca_file", "cert_file", "key_file",
                           "verify_hostname", "heartbeat"]

    /// The built-in defaults.
    package init() {}

    /// Reads virtmeter.yaml. Unknown keys, wrong types and missing required values throw `ConfigError` naming the
    /// file, the line and the key.
    package static func load(file: String) throws(ConfigError) -> AgentConfiguration {
        try parse(YAMLMapping.load(file: file))
    }

    /// Parses virtmeter.yaml's `text` as if read from `file`.
    package static func parse(_ text: String, file: String) throws(ConfigError) -> AgentConfiguration {
        try parse(YAMLMapping.parse(text, file: file))
    }

    static func parse(_ root: YAMLMapping) throws(ConfigError) -> AgentConfiguration {
        try root.rejectUnknownKeys(topLevelKeys)
        var config = AgentConfiguration()
        if let host = try root.string("host") { config.host = host }
        if let uri = try root.string("libvirt_uri") { config.libvirtURI = uri }
        config.pollingFile = try root.string("polling_file")
        config.metersDirectory = try root.string("meters_dir")
        config.secretFile = try root.string("secret_file")
        if let size = try root.int("batch_size", range: 1...10_000) { config.batchSize = size }
        if let level = try root.string("log_level") {
            guard let parsed = Logger.Level(rawValue: level) else {
                throw root.error("log_level", "expected one of "
                                 + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
            }
            config.logLevel = parsed
        }
        if let timeout = try root.double("shutdown_timeout", range: 0...3600) { config.shutdownTimeout = timeout }
        if let every = try root.int("summary_every_cycles", range: 0...1_000_000) { config.summaryEveryCycles = every }
        if let directory = try root.string("state_dir") { config.stateDirectory = directory }
        if let cap = try root.int("spool_cap_mib", range: 1...1_048_576) { config.spoolCapMiB = cap }
        if let fsync = try root.string("spool_fsync") {
            guard let policy = FsyncPolicy(rawValue: fsync) else {
                let policies = FsyncPolicy.allCases.map(\.rawValue).joined(separator: ", ")
                throw root.error("spool_fsync", "expected one of " + policies)
            }
            config.spoolFsync = policy
        }
        if let initial = try root.double("retry_initial", range: 0.01...3600) { config.retryInitial = initial }
        if let maximum = try root.double("retry_max", range: 0.01...86400) { config.retryMaximum = maximum }
        guard config.retryMaximum >= config.retryInitial else {
            throw root.error("retry_max", "must not be smaller than retry_initial")
        }
        if let shutOff = try root.bool("sample_shut_off_domains") { config.inspection.sampleShutOffDomains = shutOff }
        if let names = try root.bool("user_and_project_names_from_nova") { config.inspection.namesFromNova = names }
        if let policy = try root.string("domains_without_nova_metadata") {
            guard let parsed = InspectionOptions.DomainsWithoutNova(rawValue: policy) else {
                let policies = InspectionOptions.DomainsWithoutNova.allCases.map(\.rawValue).joined(separator: ", ")
                throw root.error("domains_without_nova_metadata", "expected one of " + policies)
            }
            config.inspection.domainsWithoutNova = parsed
        }
        if let mapping = try root.mapping("prometheus") { config.prometheus = try prometheus(mapping) }
        if let entries = try root.mappings("publishers") {
            guard !entries.isEmpty else { throw root.error("publishers", "at least one publisher is required") }
            config.publishers = try entries.map { entry throws(ConfigError) in try publisher(entry) }
        }
        return config
    }

    static func publisher(_ entry: YAMLMapping) throws(ConfigError) -> PublisherSettings {
        switch try entry.requiredString("type") {
        case "stdout":
            try entry.rejectUnknownKeys(["type"])
            return .stdout
        case "file":
            try entry.rejectUnknownKeys(["type", "path"])
            return .file(path: try entry.requiredString("path"))
        case "amqp":
            try entry.rejectUnknownKeys(amqpKeys)
            guard let urls = try entry.strings("url"), !urls.isEmpty, !urls.contains(where: \.isEmpty) else {
                throw entry.error("url", "required value is missing")
            }
            let url = urls.joined(separator: ",")
            if let problem = schemeProblem(url, list: urls.count > 1) { throw entry.error("url", problem) }
            var amqp = AMQPPublisherSettings(url: url)
            amqp.passwordFile = try entry.string("password_file")
            if let shuffle = try entry.bool("shuffle_nodes") { amqp.shuffleNodes = shuffle }
            if let exchange = try entry.string("exchange") { amqp.exchange = exchange }
            if let quorum = try entry.bool("quorum_queue") { amqp.quorumQueue = quorum }
            if let durable = try entry.bool("exchange_durable") {
                guard durable || !amqp.quorumQueue else {
                    throw entry.error("exchange_durable", "a quorum queue needs a durable exchange: remove "
                                      + "exchange_durable or set it to true")
                }
                amqp.exchangeDurable = durable
            }
            if let topic = try entry.string("topic") { amqp.topic = topic }
            if let declare = try entry.bool("declare_queue") { amqp.declareQueue = declare }
            amqp.caFile = try entry.string("ca_file")
            amqp.certFile = try entry.string("cert_file")
            amqp.keyFile = try entry.string("key_file")
            if let verify = try entry.bool("verify_hostname") { amqp.verifyHostname = verify }
            if let heartbeat = try entry.int("heartbeat", range: 0...3600) { amqp.heartbeatSeconds = heartbeat }
            if (amqp.certFile == nil) != (amqp.keyFile == nil) {
                throw entry.error("cert_file", "cert_file and key_file go together")
            }
            return .amqp(amqp)
        case let other:
            throw entry.error("type", "unknown publisher type '\(other)' (known: amqp, stdout, file)")
        }
    }

    /// What is wrong with the schemes of an AMQP URL or comma-joined list of nodes, or nil: every node must be
    /// `amqp://` or `amqps://` (in oslo's form only the first names it; in a YAML list each does), never both.
    static func schemeProblem(_ url: String, list: Bool) -> String? {
        guard url.hasPrefix("amqp://") || url.hasPrefix("amqps://") else {
            return list ? "expected a list of amqp:// or amqps:// URLs" : "expected an amqp:// or amqps:// URL"
        }
        let first = url.hasPrefix("amqps://") ? "amqps" : "amqp"
        for (index, part) in url.split(separator: ",").enumerated() where part.contains("://") || list {
            let scheme = part.hasPrefix("amqps://") ? "amqps" : part.hasPrefix("amqp://") ? "amqp" : nil
            guard let scheme else { return "node \(index + 1) is not an amqp:// or amqps:// URL" }
            guard scheme == first else {
                return "node 1 is \(first):// and node \(index + 1) \(scheme)://: amqp:// and amqps:// cannot be "
                    + "mixed in one publisher's nodes"
            }
        }
        return nil
    }

    static func prometheus(_ mapping: YAMLMapping) throws(ConfigError) -> PrometheusSettings {
        try mapping.rejectUnknownKeys(prometheusKeys)
        guard let listen = try mapping.strings("listen"), !listen.isEmpty else {
            throw mapping.error("listen", "at least one HOST:PORT address is required")
        }
        for address in listen where PrometheusSettings.hostAndPort(address) == nil {
            throw mapping.error("listen", "'\(address)' is not HOST:PORT (an IPv6 address in brackets: [::1]:9702)")
        }
        var settings = PrometheusSettings(listen: listen)
        settings.certFile = try mapping.string("cert_file")
        settings.keyFile = try mapping.string("key_file")
        if (settings.certFile == nil) != (settings.keyFile == nil) {
            throw mapping.error(settings.certFile == nil ? "key_file" : "cert_file",
                                "cert_file and key_file go together")
        }
        if let intervals = try mapping.int("healthz_intervals", range: 1...1000) {
            settings.healthzIntervals = intervals
        }
        return settings
    }

    /// The spool's settings.
    package var spool: SpoolConfiguration {
        SpoolConfiguration(directory: stateDirectory + "/spool", capBytes: spoolCapMiB << 20, fsync: spoolFsync)
    }

    /// Applies the environment overrides: `VIRTMETER_AMQP_URL` replaces the URL of every AMQP publisher (or adds
    /// one when there is none), `VIRTMETER_SECRET_FILE` the secret file.
    package mutating func applyEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let url = environment[Self.brokerURLVariable], !url.isEmpty { overrideBroker(url) }
        if let secret = environment[Self.secretFileVariable], !secret.isEmpty { secretFile = secret }
    }

    /// Points every AMQP publisher at `url`, keeping their other settings; replaces the publishers with one AMQP
    /// publisher when none is configured.
    package mutating func overrideBroker(_ url: String) {
        var replaced = false
        publishers = publishers.map { publisher in
            guard case .amqp(var settings) = publisher else { return publisher }
            settings.url = url
            replaced = true
            return .amqp(settings)
        }
        if !replaced { publishers = [.amqp(AMQPPublisherSettings(url: url))] }
    }
}

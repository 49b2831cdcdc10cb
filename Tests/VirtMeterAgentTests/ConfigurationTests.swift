import Foundation
import Logging
import Testing
import VirtMeterTestSupport
import VirtMeterCore
@testable import VirtMeterAgent


func fixturePath(_ name: String) throws -> String {
    try #require(Bundle.module.url(forResource: name, withExtension: "yaml", subdirectory: "Fixtures")).path
}

/// Expects `parse` to throw an error whose description is one line starting with `expected` (file:line: key: why).
func expectOneLineError(startingWith expected: String, sourceLocation: SourceLocation = #_sourceLocation,
                        _ parse: () throws -> Void) {
    #expect(sourceLocation: sourceLocation) {
        try parse()
    } throws: { error in
        let description = "\(error)"
        return description.hasPrefix(expected) && !description.contains("\n")
    }
}

@Suite("polling.yaml in ceilometer's format")
struct PollingConfigurationTests {
    @Test("ceilometer's own polling.yaml loads unchanged: every meter every 300 s")
    func ceilometerDefault() throws {
        let polling = try PollingConfiguration.load(file: try fixturePath("ceilometer-polling"))
        #expect(polling.sources.map(\.name) == ["all_pollsters"])
        #expect(polling.sources[0].interval == 300)
        #expect(polling.sources[0].meters.count == MeterRegistry.builtIn.meters.count)
        #expect(polling.warnings.isEmpty)
    }

    @Test("a list of named meters: those virtmeter lacks are named in one warning")
    func someMeters() throws {
        let polling = try PollingConfiguration.load(file: try fixturePath("ceilometer-polling-some"))
        #expect(polling.sources[0].meters.map(\.name) == [
            "cpu", "memory.usage", "disk.device.read.bytes", "disk.device.read.requests", "disk.device.write.bytes",
            "disk.device.write.requests", "network.incoming.bytes", "network.outgoing.bytes",
            "network.incoming.packets", "network.outgoing.packets",
        ])
        #expect(polling.warnings.count == 1)
        let warning = try #require(polling.warnings.first)
        #expect(warning.contains("cpu_l3_cache, volume.size, volume.snapshot.size, volume.backup.size"))
    }

    @Test("an operator's file with several sources and `resources` loads, with warnings")
    func operatorFile() throws {
        let polling = try PollingConfiguration.load(file: try fixturePath("ceilometer-polling-operator"))
        #expect(polling.sources.map(\.name) == ["compute_polling", "central_polling", "hardware_snmp"])
        #expect(polling.sources.map(\.interval) == [300, 300, 60])
        #expect(polling.sources[1].meters.map(\.name) == ["vcpus", "memory", "disk.root.size"])
        #expect(polling.sources[2].meters.isEmpty)
        #expect(polling.warnings.contains { $0.contains("sources[2].resources is ignored") })
        #expect(polling.warnings.contains { $0.contains("instance") && $0.contains("hardware.cpu.util") })
    }

    @Test("the shipped polling.yaml loads without warnings")
    func shipped() throws {
        let polling = try PollingConfiguration.load(file: repositoryRoot.appendingPathComponent(
            "etc/virtmeter/polling.yaml").path)
        #expect(polling.sources.count == 2 && polling.warnings.isEmpty)
        #expect(polling.sources[1].meters.count == 22)
    }

    @Test("a missing interval takes ceilometer's default of 600 s; exclusions admit the rest")
    func defaultsAndExclusions() throws {
        let polling = try PollingConfiguration.parse(
            "sources:\n  - name: s\n    meters: ['!disk.*', '!network.*']\n", file: "p.yaml")
        #expect(polling.sources[0].interval == 600)
        #expect(polling.sources[0].meters.count == InstanceMeters.all.count - 2)   // not disk.root/ephemeral.size
    }

    @Test("errors name the file, the line and the key", arguments: [
        ("sources:\n  - name: a\n    interval: 10\n    meters: [cpu, '!memory']\n", "p.yaml:4: sources[0].meters"),
        ("sources:\n  - name: a\n    interval: fast\n    meters: [cpu]\n", "p.yaml:3: sources[0].interval"),
        ("sources:\n  - name: a\n    interval: 0\n    meters: [cpu]\n", "p.yaml:3: sources[0].interval"),
        ("sources:\n  - interval: 5\n    meters: [cpu]\n", "p.yaml:2: sources[0].name: required value is missing"),
        ("sources:\n  - name: a\n    interval: 5\n", "p.yaml:2: sources[0].meters"),
        ("sources:\n  - name: a\n    meters: [cpu]\n  - name: a\n    meters: [cpu]\n", "p.yaml:4: sources[1].name"),
        ("sources: []\n", "p.yaml:1: sources"),
        ("sources:\n  - name: a\n    meters: [cpu\n", "p.yaml:4: not valid YAML"),
        ("- just\n- a list\n", "p.yaml:1: expected a mapping"),
    ])
    func errors(_ text: String, _ expected: String) {
        expectOneLineError(startingWith: expected) { _ = try PollingConfiguration.parse(text, file: "p.yaml") }
    }
}

@Suite("virtmeter.yaml")
struct AgentConfigurationTests {
    @Test("the shipped file documents and sets every key")
    func shipped() throws {
        let file = repositoryRoot.appendingPathComponent("etc/virtmeter/virtmeter.yaml").path
        let config = try AgentConfiguration.load(file: file)
        #expect(config.libvirtURI == "qemu:///system")
        #expect(config.pollingFile == "/etc/virtmeter/polling.yaml")
        #expect(config.batchSize == 50 && config.logLevel == .info && config.shutdownTimeout == 10)
        guard case .amqp(let amqp) = try #require(config.publishers.first) else {
            Issue.record("the first publisher is not amqp")
            return
        }
        #expect(amqp.exchange == "ceilometer" && !amqp.exchangeDurable && amqp.topic == "notifications")
        #expect(amqp.declareQueue && amqp.verifyHostname && amqp.heartbeatSeconds == 60)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        for key in AgentConfiguration.topLevelKeys + AgentConfiguration.amqpKeys {
            #expect(text.contains("\(key):"), "key \(key) is not documented in the shipped file")
        }
    }

    @Test("no file: built-in defaults")
    func defaults() throws {
        let config = try AgentConfiguration.parse("", file: "empty.yaml")
        #expect(config == AgentConfiguration())
        #expect(config.publishers == [.stdout] && config.pollingFile == nil)
    }

    @Test("several publishers, and the environment overrides the broker URL and the secret file")
    func publishersAndEnvironment() throws {
        var config = try AgentConfiguration.parse("""
            publishers:
              - type: stdout
              - type: file
                path: /tmp/samples.jsonl
              - type: amqp
                url: amqp://ceilometer@rabbit:5672/
                exchange_durable: true
            secret_file: /etc/virtmeter/secret
            """, file: "v.yaml")
        #expect(config.publishers.count == 3)
        config.applyEnvironment(["VIRTMETER_AMQP_URL": "amqps://u@broker:5671/vh",
                                 "VIRTMETER_SECRET_FILE": "/run/secrets/telemetry"])
        guard case .amqp(let amqp) = config.publishers[2] else { Issue.record("not amqp"); return }
        #expect(amqp.url == "amqps://u@broker:5671/vh" && amqp.exchangeDurable)
        #expect(config.secretFile == "/run/secrets/telemetry")
        #expect(config.publishers[1] == .file(path: "/tmp/samples.jsonl"))
    }

    @Test("unknown keys, wrong types and missing values: one line with file, line and key", arguments: [
        ("libvirt_uri: qemu:///system\nbatchsize: 10\n", "v.yaml:2: batchsize: unknown key"),
        ("batch_size: many\n", "v.yaml:1: batch_size: expected an integer, got 'many'"),
        ("domains_without_nova_metadata: drop\n", "v.yaml:1: domains_without_nova_metadata: expected one of keep, skip"),
        ("sample_shut_off_domains: sometimes\n", "v.yaml:1: sample_shut_off_domains:"),
        ("batch_size: 0\n", "v.yaml:1: batch_size: 0 is out of range"),
        ("log_level: loud\n", "v.yaml:1: log_level: expected one of"),
        ("publishers:\n  - type: amqp\n    exchange: x\n", "v.yaml:2: publishers[0].url: required value is missing"),
        ("publishers:\n  - type: amqp\n    url: http://x/\n", "v.yaml:3: publishers[0].url: expected an amqp://"),
        ("publishers:\n  - type: kafka\n", "v.yaml:2: publishers[0].type: unknown publisher type 'kafka'"),
        ("publishers:\n  - type: file\n", "v.yaml:2: publishers[0].path: required value is missing"),
        ("publishers:\n  - type: amqp\n    url: amqp://h/\n    durable: true\n", "v.yaml:4: publishers[0].durable"),
        ("publishers:\n  - type: amqp\n    url: amqp://h/\n    declare_queue: maybe\n",
         "v.yaml:4: publishers[0].declare_queue: expected true or false"),
        ("publishers:\n  - type: amqp\n    url: [amqp://a/, amqps://b/]\n",
         "v.yaml:3: publishers[0].url: node 1 is amqp:// and node 2 amqps://: amqp:// and amqps:// cannot be mixed"),
        ("publishers:\n  - type: amqp\n    url: amqps://a:1,u@b:2,amqp://c:3/\n",
         "v.yaml:3: publishers[0].url: node 1 is amqps:// and node 3 amqp://"),
        ("publishers:\n  - type: amqp\n    url: [amqp://a/, 'b:5672']\n",
         "v.yaml:3: publishers[0].url: node 2 is not an amqp:// or amqps:// URL"),
        ("publishers:\n  - type: amqp\n    url: []\n", "v.yaml:3: publishers[0].url: required value is missing"),
        ("publishers:\n  - type: amqp\n    url: amqp://h/\n    exchange_durable: false\n    quorum_queue: true\n",
         "v.yaml:4: publishers[0].exchange_durable: a quorum queue needs a durable exchange"),
        ("publishers:\n  - type: amqp\n    url: amqp://h/\n    shuffle_nodes: often\n",
         "v.yaml:4: publishers[0].shuffle_nodes: expected true or false"),
        ("host: [a, b]\n", "v.yaml:1: host: expected a single value"),
        ("host: a\n  bad: indentation\n", "v.yaml:2: not valid YAML"),
        ("prometheus:\n  listen: ['127.0.0.1:9702']\n  port: 1\n", "v.yaml:3: prometheus.port: unknown key"),
        ("prometheus:\n  listen: ['::1:9702']\n", "v.yaml:2: prometheus.listen: '::1:9702' is not HOST:PORT"),
        ("prometheus:\n  listen: ['h:99999']\n", "v.yaml:2: prometheus.listen: 'h:99999' is not HOST:PORT"),
        ("prometheus:\n  cert_file: /c.pem\n", "v.yaml:2: prometheus.listen: at least one HOST:PORT"),
        ("prometheus:\n  listen: h:1\n  cert_file: /c.pem\n", "v.yaml:3: prometheus.cert_file: cert_file and key_file"),
        ("prometheus:\n  listen: h:1\n  healthz_intervals: 0\n", "v.yaml:3: prometheus.healthz_intervals: 0 is out"),
        ("prometheus: on\n", "v.yaml:1: prometheus: expected a mapping"),
    ])
    func errors(_ text: String, _ expected: String) {
        expectOneLineError(startingWith: expected) { _ = try AgentConfiguration.parse(text, file: "v.yaml") }
    }

    @Test("a cluster's nodes: oslo's form or a YAML list, shuffled on request, with a quorum queue")
    func clusterNodes() throws {
        let config = try AgentConfiguration.parse("""
            publishers:
              - type: amqp
                url: amqp://u1@h1:5672,u2@h2:5673/vh
              - type: amqp
                url:
                  - amqps://u@h1:5671/vh
                  - amqps://u@h2:5671/vh
                shuffle_nodes: true
                quorum_queue: true
            """, file: "v.yaml")
        guard case .amqp(let oslo) = config.publishers[0], case .amqp(let list) = config.publishers[1] else {
            Issue.record("not amqp")
            return
        }
        #expect(oslo.url == "amqp://u1@h1:5672,u2@h2:5673/vh" && !oslo.shuffleNodes && !oslo.quorumQueue)
        #expect(list.url == "amqps://u@h1:5671/vh,amqps://u@h2:5671/vh" && list.shuffleNodes && list.quorumQueue)
        #expect(!list.exchangeDurable, "the exchange's durability follows from quorum_queue in the publisher")
    }

    @Test("prometheus: off by default; listen addresses (IPv6 in brackets), TLS files, the healthz limit")
    func prometheus() throws {
        #expect(try AgentConfiguration.parse("", file: "v.yaml").prometheus == nil)
        let config = try AgentConfiguration.parse("""
            prometheus:
              listen: ["127.0.0.1:9702", "[::1]:9702"]
              cert_file: /etc/virtmeter/prometheus.pem
              key_file: /etc/virtmeter/prometheus.key
              healthz_intervals: 5
            """, file: "v.yaml")
        let prometheus = try #require(config.prometheus)
        #expect(prometheus.listen == ["127.0.0.1:9702", "[::1]:9702"])
        #expect(prometheus.certFile == "/etc/virtmeter/prometheus.pem" && prometheus.keyFile != nil)
        #expect(prometheus.healthzIntervals == 5)
        #expect(PrometheusSettings.hostAndPort("[::1]:9702")! == ("::1", 9702))
        #expect(PrometheusSettings.hostAndPort("localhost:0")! == ("localhost", 0))
        #expect(PrometheusSettings.hostAndPort("9702") == nil && PrometheusSettings.hostAndPort("[::1]") == nil)
        #expect(try AgentConfiguration.parse("prometheus: {listen: h:1}", file: "v.yaml").prometheus?.healthzIntervals
                == 3)
    }

    @Test("a missing or huge file is refused with its name")
    func unreadable() throws {
        #expect(throws: ConfigError(file: "/nonexistent/virtmeter.yaml", message: "cannot read the file")) {
            try AgentConfiguration.load(file: "/nonexistent/virtmeter.yaml")
        }
        let huge = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-huge-\(getpid()).yaml")
        try Data(repeating: UInt8(ascii: "#"), count: YAMLMapping.maxFileBytes + 1).write(to: huge)
        defer { try? FileManager.default.removeItem(at: huge) }
        #expect(throws: ConfigError.self) { try AgentConfiguration.load(file: huge.path) }
    }
}

@Suite("hostile configuration files")
struct HostileConfigurationTests {
    @Test("a YAML alias bomb is refused or bounded, never expanded into gigabytes")
    func aliasBomb() throws {
        var text = "a: &a [\"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\"]\n"
        for level in 1...9 {
            let refs = Array(repeating: "*\(Character(UnicodeScalar(96 + level)!))", count: 10).joined(separator: ", ")
            text += "\(Character(UnicodeScalar(97 + level)!)): &\(Character(UnicodeScalar(97 + level)!)) [\(refs)]\n"
        }
        text += "sources:\n  - name: s\n    meters: *j\n"
        let start = Date()
        #expect(throws: ConfigError.self) { try PollingConfiguration.parse(text, file: "bomb.yaml") }
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test("binary garbage and non-UTF-8 are one clear error")
    func garbage() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-garbage-\(getpid()).yaml")
        try Data([0xFF, 0xFE, 0x00, 0x80, 0x81]).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(throws: ConfigError(file: file.path, message: "not UTF-8 text")) {
            try AgentConfiguration.load(file: file.path)
        }
    }
}

@Suite("virtmeter.yaml: the options an operator knows from ceilometer")
struct InspectionOptionsConfigurationTests {
    @Test("shut-off domains off, names null, domains without nova kept by default; each can be set")
    func options() throws {
        #expect(AgentConfiguration().inspection == InspectionOptions())
        #expect(!InspectionOptions().sampleShutOffDomains && !InspectionOptions().namesFromNova)
        #expect(InspectionOptions().domainsWithoutNova == .keep)
        let config = try AgentConfiguration.parse("""
            sample_shut_off_domains: true
            user_and_project_names_from_nova: true
            domains_without_nova_metadata: skip
            """, file: "v.yaml")
        #expect(config.inspection == InspectionOptions(sampleShutOffDomains: true, namesFromNova: true,
                                                       domainsWithoutNova: .skip))
    }
}

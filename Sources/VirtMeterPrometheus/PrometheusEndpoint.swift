import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import Metrics
import NIOCore
import NIOSSL
import Prometheus
import ServiceLifecycle
import VirtMeterAgent
import VirtMeterCore

/// The opt-in HTTP endpoint of `virtmeter run` (issue 12), one Hummingbird server per listen address:
/// `GET /metrics` serves the last complete cycles' samples in ceilometer's exporter format followed by the agent's
/// own `virtmeter_*` metrics (swift-prometheus), `GET /healthz` 200 `ok` or 503 with the reason. A request reads
/// what the poll loop last swapped in and the counters behind their locks: it never waits for a cycle or libvirt.
package struct PrometheusEndpoint: Sendable {
    /// What the poll and publish services report to.
    package let vitals: AgentVitals
    private let registry: PrometheusCollectorRegistry
    private let exposition: CeilometerExposition
    private let metrics: AgentMetrics
    private let spool: Spool

    /// The text format's content type, as prometheus_client serves it.
    package static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// An endpoint whose series are stamped as `stamper` stamps samples, healthy while cycles complete within
    /// `settings.healthzIntervals` of `interval` seconds, with `notifier` for systemd.
    package init(settings: PrometheusSettings, stamper: SampleStamper, interval: Double, spool: Spool,
                notifier: SystemdNotifier?, version: String) {
        registry = PrometheusCollectorRegistry()
        exposition = CeilometerExposition(stamper: stamper)
        metrics = AgentMetrics(factory: PrometheusMetricsFactory(registry: registry), version: version)
        self.spool = spool
        vitals = AgentVitals(exposition: exposition, metrics: metrics,
                             health: AgentHealth(limitIntervals: settings.healthzIntervals, interval: interval),
                             notifier: notifier)
    }

    /// The body of `GET /metrics`.
    package func metricsBody() -> ByteBuffer {
        metrics.refresh(spool: spool.currentCounters)
        let ceilometer = exposition.currentChunks
        var agent: [UInt8] = []
        registry.emit(into: &agent)
        var buffer = ByteBufferAllocator().buffer(capacity: ceilometer.reduce(agent.count) { $0 + $1.count })
        for chunk in ceilometer { buffer.writeBytes(chunk) }
        buffer.writeBytes(agent)
        return buffer
    }

    /// The reason `/healthz` answers 503, or nil for 200.
    package func healthProblem() -> String? { vitals.health.problem(spool: spool.currentCounters) }

    /// One server per address of `settings.listen`, HTTPS when `settings` has a certificate and key (read now: a
    /// file that cannot be read or parsed throws, naming it).
    package func services(_ settings: PrometheusSettings, logger: Logger) throws -> [any Service] {
        var tls: TLSConfiguration?
        if let certFile = settings.certFile, let keyFile = settings.keyFile {
            let chain: [NIOSSLCertificate]
            let key: NIOSSLPrivateKey
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certFile)
            } catch {
                throw EndpointError("prometheus cert_file \(certFile): cannot load a PEM certificate: \(error)")
            }
            guard !chain.isEmpty else { throw EndpointError("prometheus cert_file \(certFile): no certificate") }
            do {
                key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
            } catch {
                throw EndpointError("prometheus key_file \(keyFile): cannot load a PEM private key: \(error)")
            }
            tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                           privateKey: .privateKey(key))
        }
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: Self.contentType],
                     body: ResponseBody(byteBuffer: metricsBody()))
        }
        router.get("healthz") { _, _ -> Response in
            let problem = healthProblem()
            return Response(status: problem == nil ? .ok : .serviceUnavailable,
                            headers: [.contentType: "text/plain; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: (problem ?? "ok") + "\n")))
        }
        let responder = router.buildResponder()
        let secure = tls != nil
        return try settings.listen.map { address -> any Service in
            guard let (host, port) = PrometheusSettings.hostAndPort(address) else {
                throw EndpointError("prometheus listen: '\(address)' is not HOST:PORT")
            }
            let server: HTTPServerBuilder = try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1()
            return Listener(address: address, server: Application(responder: responder, server: server,
                               configuration: ApplicationConfiguration(address: .hostname(host, port: port),
                                                                       serverName: nil),
                               onServerRunning: { channel in
                                   let listening = channel.localAddress.map { "\($0)" } ?? address
                                   logger.info("prometheus endpoint listening", metadata: [
                                       "virtmeter.prometheus.address": "\(listening)",
                                       "virtmeter.prometheus.tls": "\(secure)",
                                   ])
                               },
                               logger: logger))
        }
    }
}

/// One server, whose failure (the address in use, not this host's) names its address.
private struct Listener: Service {
    let address: String
    let server: any Service

    func run() async throws {
        do {
            try await server.run()
        } catch {
            throw EndpointError("prometheus listen \(address): \(error)")
        }
    }
}

/// A setting of the endpoint that cannot be used: one line.
package struct EndpointError: Error, CustomStringConvertible {
    package let description: String

    init(_ description: String) { self.description = description }
}

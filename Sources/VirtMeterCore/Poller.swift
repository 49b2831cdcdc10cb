import Logging

/// What one poll cycle produced.
public struct CycleResult: Sendable {
    public var samples: [Sample]
    public var domains: Int
    /// Seconds spent reading the hypervisor, and building and signing samples.
    public var inspectSeconds: Double
    public var buildSeconds: Double
}

/// One poll cycle: read every domain once, run the selected meters over each snapshot (with the previous snapshot
/// of the same domain, for rates) and stamp the readings into samples. Keeps the previous snapshots of the domains
/// seen in the last cycle only, so vanished domains are forgotten.
public actor Poller {
    private let hypervisor: any Hypervisor
    private let meters: [any Meter]
    private let stamper: SampleStamper
    private let logger: Logger
    private var previous: [String: DomainSnapshot] = [:]
    /// Each domain's metadata, built and walked for signing once, until what it is built from changes.
    private var prepared: [String: SampleStamper.PreparedDomain] = [:]
    /// "meter uuid" pairs already warned about, so each problem is logged once per domain.
    private var warned: Set<String> = []

    public init(hypervisor: any Hypervisor, meters: [any Meter], stamper: SampleStamper, logger: Logger) {
        self.hypervisor = hypervisor
        self.meters = meters
        self.stamper = stamper
        self.logger = logger
    }

    /// Polls once. Throws only when the hypervisor cannot be read at all.
    public func cycle() async throws -> CycleResult {
        let start = Clock.monotonic()
        let snapshots = try await hypervisor.poll()
        let read = Clock.monotonic()
        var samples: [Sample] = []
        samples.reserveCapacity(snapshots.count * meters.count)
        var current: [String: DomainSnapshot] = [:]
        current.reserveCapacity(snapshots.count)
        var currentPrepared: [String: SampleStamper.PreparedDomain] = [:]
        currentPrepared.reserveCapacity(snapshots.count)
        for snapshot in snapshots {
            warnOnce(about: snapshot)
            var domain = prepared[snapshot.uuid]
            if domain?.key != SampleStamper.MetadataKey(snapshot) { domain = stamper.prepare(snapshot) }
            samples += stamper.samples(snapshot, previous: previous[snapshot.uuid], meters: meters, prepared: domain)
            current[snapshot.uuid] = snapshot
            currentPrepared[snapshot.uuid] = domain
        }
        previous = current
        prepared = currentPrepared
        warned = warned.filter { current[String($0.split(separator: " ").last ?? "")] != nil }
        return CycleResult(samples: samples, domains: snapshots.count, inspectSeconds: read - start,
                           buildSeconds: Clock.monotonic() - read)
    }

    private func warnOnce(about snapshot: DomainSnapshot) {
        for meter in meters {
            guard let reason = meter.unavailableReason(snapshot) else { continue }
            guard warned.insert("\(meter.name) \(snapshot.uuid)").inserted else { continue }
            logger.warning("meter unavailable for domain", metadata: [
                "meter": "\(meter.name)", "domain": "\(snapshot.name)", "uuid": "\(snapshot.uuid)",
                "reason": "\(reason)",
            ])
        }
    }
}

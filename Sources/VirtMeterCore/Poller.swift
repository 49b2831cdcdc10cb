import Logging

/// What one poll cycle produced.
public struct CycleResult: Sendable {
    public var samples: [Sample]
    public var domains: Int
    /// Seconds spent reading the hypervisor, and building and signing samples.
    public var inspectSeconds: Double
    public var buildSeconds: Double
}

/// A set of meters polled together: a polling.yaml source, or the `--meters` of `virtmeter poll`.
public struct PollingGroup: Sendable {
    public let name: String
    public let meters: [any Meter]

    public init(name: String, meters: [any Meter]) {
        self.name = name
        self.meters = meters
    }
}

/// One poll cycle: read every domain once, run each due group's meters over each snapshot (with the snapshot that
/// group saw last time, for rates and deltas) and stamp the readings into samples. A group keeps the snapshots of
/// the domains of its last cycle only, so vanished domains are forgotten.
public actor Poller {
    private let hypervisor: any Hypervisor
    private let defaultGroup: PollingGroup
    private let stamper: SampleStamper
    private let logger: Logger
    /// Per group, the snapshots its last cycle used: `cpu_util` and delta meters compute from them.
    private var previous: [String: [String: DomainSnapshot]] = [:]
    /// Each domain's metadata, built and walked for signing once, until what it is built from changes.
    private var prepared: [String: SampleStamper.PreparedDomain] = [:]
    /// "meter uuid" pairs already warned about, so each problem is logged once per domain.
    private var warned: Set<String> = []

    /// A poller whose `cycle()` polls `meters`; `cycle(_:)` polls any groups.
    public init(hypervisor: any Hypervisor, meters: [any Meter] = [], stamper: SampleStamper, logger: Logger) {
        self.hypervisor = hypervisor
        self.defaultGroup = PollingGroup(name: "default", meters: meters)
        self.stamper = stamper
        self.logger = logger
    }

    /// Polls once for the meters given at init. Throws only when the hypervisor cannot be read at all.
    public func cycle() async throws -> CycleResult { try await cycle([defaultGroup]) }

    /// Reads the hypervisor once and makes the samples of every group in `groups`. Throws only when the hypervisor
    /// cannot be read at all.
    public func cycle(_ groups: [PollingGroup]) async throws -> CycleResult {
        let start = Clock.monotonic()
        let snapshots = try await hypervisor.poll()
        let read = Clock.monotonic()
        var samples: [Sample] = []
        samples.reserveCapacity(snapshots.count * groups.reduce(0) { $0 + $1.meters.count })
        var currentPrepared: [String: SampleStamper.PreparedDomain] = [:]
        currentPrepared.reserveCapacity(snapshots.count)
        var seen: [String: DomainSnapshot] = [:]
        seen.reserveCapacity(snapshots.count)
        for snapshot in snapshots {
            seen[snapshot.uuid] = snapshot
            var domain = prepared[snapshot.uuid]
            if domain?.key != SampleStamper.MetadataKey(snapshot) { domain = stamper.prepare(snapshot) }
            currentPrepared[snapshot.uuid] = domain
            for group in groups {
                warnOnce(about: snapshot, meters: group.meters)
                samples += stamper.samples(snapshot, previous: previous[group.name]?[snapshot.uuid],
                                           meters: group.meters, prepared: domain)
            }
        }
        for group in groups { previous[group.name] = seen }
        prepared = currentPrepared
        warned = warned.filter { seen[String($0.split(separator: " ").last ?? "")] != nil }
        return CycleResult(samples: samples, domains: snapshots.count, inspectSeconds: read - start,
                           buildSeconds: Clock.monotonic() - read)
    }

    /// Drops the state of groups not in `names` (sources removed by a reload).
    public func keepGroups(_ names: Set<String>) {
        previous = previous.filter { names.contains($0.key) }
    }

    private func warnOnce(about snapshot: DomainSnapshot, meters: [any Meter]) {
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

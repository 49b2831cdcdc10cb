import Logging

/// What one poll cycle produced.
package struct CycleResult: Sendable {
    /// Samples and records handed over.
    package var samples = 0
    package var records = 0
    /// Samples refused because a number could not be written (a NaN or infinite volume).
    package var refused = 0
    package var domains = 0
    /// Seconds spent reading the hypervisor, building and signing samples, and in `deliver`.
    package var inspectSeconds = 0.0
    package var buildSeconds = 0.0
    package var deliverSeconds = 0.0
}

/// A set of meters polled together: a polling.yaml source, or the `--meters` of `virtmeter poll`.
package struct PollingGroup: Sendable {
    package let name: String
    package let meters: [any Meter]

    package init(name: String, meters: [any Meter]) {
        self.name = name
        self.meters = meters
    }
}

/// One poll cycle: read every domain once, run each due group's meters over each snapshot (with the snapshot that
/// group saw last time, for rates and deltas) and write the readings as signed samples, in records of
/// `samplesPerRecord`, handed over a chunk at a time so a cycle never holds all its samples' bytes at once. A group
/// keeps the snapshots of the domains of its last cycle only, so vanished domains are forgotten.
///
/// A value type whose `cycle` is `mutating`: whoever owns it runs one cycle at a time, by construction.
package struct Poller {
    private let hypervisor: any Hypervisor
    private let defaultGroup: PollingGroup
    private let stamper: SampleStamper
    private var encoder: SampleEncoder
    /// Sealed records are handed over once the buffer holds this many bytes.
    private let chunkBytes: Int
    private let logger: Logger
    /// Per group, the snapshots its last cycle used: `cpu_util` and delta meters compute from them.
    private var previous: [String: [String: DomainSnapshot]] = [:]
    /// Each domain's rendered metadata, until what it is built from changes.
    private var prepared: [String: SampleStamper.PreparedDomain] = [:]
    /// "meter uuid" pairs already warned about, so each problem is logged once per domain.
    private var warned: Set<String> = []
    /// Writes each cycle's records (its buffers are kept from cycle to cycle).
    private var writer: RecordWriter

    /// A poller whose `cycle(deliver:)` polls `meters`; `cycle(_:deliver:)` polls any groups.
    package init(hypervisor: any Hypervisor, meters: [any Meter] = [], stamper: SampleStamper,
                samplesPerRecord: Int = 50, chunkBytes: Int = 1 << 20, logger: Logger) {
        self.hypervisor = hypervisor
        self.defaultGroup = PollingGroup(name: "default", meters: meters)
        self.stamper = stamper
        self.encoder = SampleEncoder(signer: stamper.signer)
        self.chunkBytes = chunkBytes
        self.logger = logger
        writer = RecordWriter(samplesPerRecord: samplesPerRecord, capacity: chunkBytes + (256 << 10))
    }

    /// Polls once for the meters given at init. Throws only when the hypervisor cannot be read at all.
    package mutating func cycle(deliver: (SampleRecords) async throws -> Void) async throws -> CycleResult {
        try await cycle([defaultGroup], deliver: deliver)
    }

    /// Reads the hypervisor once and writes the samples of every group in `groups`, handing the records to
    /// `deliver` in chunks (in order; the last one when the cycle ends). Throws only when the hypervisor cannot be
    /// read at all, or what `deliver` throws.
    package mutating func cycle(_ groups: [PollingGroup], deliver: (SampleRecords) async throws -> Void)
        async throws -> CycleResult {
        let start = SampleClock.monotonic()
        let snapshots = try await hypervisor.poll()
        var result = CycleResult(domains: snapshots.count, inspectSeconds: SampleClock.monotonic() - start)
        let built = SampleClock.monotonic()
        writer.recycle(writer.takeAll())   // what a cycle that failed to deliver left
        func hand(_ records: consuming SampleRecords) async throws {
            guard !records.spans.isEmpty else { return }
            result.samples += records.sampleCount
            result.records += records.spans.count
            let handing = SampleClock.monotonic()
            try await deliver(records)
            result.deliverSeconds += SampleClock.monotonic() - handing
            writer.recycle(records)
        }
        var currentPrepared: [String: SampleStamper.PreparedDomain] = [:]
        currentPrepared.reserveCapacity(snapshots.count)
        var seen: [String: DomainSnapshot] = [:]
        seen.reserveCapacity(snapshots.count)
        for snapshot in snapshots {
            seen[snapshot.uuid] = snapshot
            // Taken out of `prepared`, so that what the stamper adds to it is added in place, not to a copy.
            var domain = prepared.removeValue(forKey: snapshot.uuid) ?? stamper.prepare(snapshot)
            if domain.key != SampleStamper.MetadataKey(snapshot) { domain = stamper.prepare(snapshot) }
            for group in groups {
                warnOnce(about: snapshot, meters: group.meters)
                result.refused += stamper.write(snapshot, previous: previous[group.name]?[snapshot.uuid],
                                                meters: group.meters, prepared: &domain, encoder: &encoder,
                                                to: &writer).refused
            }
            currentPrepared[snapshot.uuid] = domain
            if writer.byteCount >= chunkBytes { try await hand(writer.takeSealed()) }
        }
        try await hand(writer.takeAll())
        for group in groups { previous[group.name] = seen }
        prepared = currentPrepared
        warned = warned.filter { seen[String($0.split(separator: " ").last ?? "")] != nil }
        result.buildSeconds = SampleClock.monotonic() - built - result.deliverSeconds
        return result
    }

    /// Drops the state of groups not in `names` (sources removed by a reload).
    package mutating func keepGroups(_ names: Set<String>) {
        previous = previous.filter { names.contains($0.key) }
    }

    private mutating func warnOnce(about snapshot: DomainSnapshot, meters: [any Meter]) {
        for meter in meters {
            guard let reason = meter.unavailableReason(snapshot) else { continue }
            guard warned.insert("\(meter.name) \(snapshot.uuid)").inserted else { continue }
            logger.warning("meter unavailable for domain", metadata: [
                "virtmeter.meter.name": "\(meter.name)", "virtmeter.domain.name": "\(snapshot.name)",
                "virtmeter.domain.uuid": "\(snapshot.uuid)", "virtmeter.meter.reason": "\(reason)",
            ])
        }
    }
}

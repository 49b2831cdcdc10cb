import Foundation
import Logging
import Synchronization
import VirtMeterCore
import VirtMeterLibvirt
import VirtMeterTestSupport

/// The snapshots of the last poll, kept beside the samples the Poller builds from them.
final class RecordingHypervisor: Hypervisor {
    let inner: LibvirtHypervisor
    let last = Mutex<[DomainSnapshot]>([])

    init(_ inner: LibvirtHypervisor) { self.inner = inner }

    func poll() async throws -> [DomainSnapshot] {
        let snapshots = try await inner.poll()
        last.withLock { $0 = snapshots }
        return snapshots
    }
}

/// What one cycle saw: virtmeter's snapshots and samples, and what the host and the guests said at that moment.
struct CycleRecord: Sendable {
    enum Phase: Sendable { case steady, churn }
    var index: Int
    var phase: Phase
    /// Monotonic seconds when the poll returned.
    var at: Double
    var snapshots: [String: DomainSnapshot]
    /// Domain-level samples by domain name, then meter name.
    var values: [String: [String: Double]]
    /// Every sample of the cycle (device meters too).
    var samples: [Sample]
    /// What the poller wrote, decoded into `samples` and `values` by `decode()` once the run is over.
    var records: [SampleRecords]
    /// Domain names by uuid.
    var names: [String: String]
    var counters: InspectionCounters
    var hostRSSKiB: [String: UInt64]
    /// `virsh domstats --cpu-total` `cpu.time`, read right after the poll.
    var virshCPUTime: [String: UInt64]
    var guestMemory: [String: GuestMemory]
    /// The guests' serial logs' `VMTEST` event lines seen by this cycle (ready, hog allocating/holding).
    var events: [String: Set<String>]
    /// vCPU run time and host run-queue delay of the kit's first guests, read right after the poll.
    var vcpu: [String: VCPUClock]
    /// `virsh dommemstat` of the idle and hog guests (major_fault, last_update, ...), read right after the poll.
    var dommemstat: [String: [String: UInt64]] = [:]
    /// `virsh domstats --block` of the io guest, read right after the poll.
    var virshBlock: [String: [String: String]] = [:]

    func value(_ domain: String, _ meter: String) -> Double? { values[domain]?[meter] }

    /// Reads `records` back into `samples` and `values`.
    mutating func decode() throws {
        samples = try records.flatMap { try $0.decodedSamples() }
        for sample in samples {
            guard let name = names[sample.resourceID] else { continue }
            values[name, default: [:]][sample.name] = sample.volume.doubleValue
        }
        records = []
    }
}

/// Host run-queue delay and run time of a guest's vCPU (`vcpu.0.delay`, `vcpu.0.time`), ns.
struct VCPUClock: Sendable {
    var time: UInt64
    var delay: UInt64
}

/// The whole recorded run: a steady phase with the kit's guests (CPU and memory figures), then a churn phase
/// (one guest destroyed, a hog guest and an io guest started mid-run).
struct ScenarioRecord: Sendable {
    var kit: GuestKit
    var guests: [KitGuest]
    var cycles: [CycleRecord]
    var warnings: [(message: String, metadata: Logger.Metadata)]
    var interval: Double
    var vcpuBefore: [String: VCPUClock]
    var vcpuAfter: [String: VCPUClock]
    var destroyed: String
    /// Index of the first cycle after the destroy returned.
    var destroyedBeforeCycle: Int
    var hogGuest: String
    var ioGuest: String
    /// Index of the first cycle after `virsh start` of the mid-run guests returned.
    var startedBeforeCycle: Int
    /// Seconds from `kit start` to the first cycle that saw the guest's ready line.
    var midRunBootSeconds: [String: Double]
    var problems: [String]
    var seconds: Double

    func guest(_ spec: String) throws -> KitGuest {
        guard let guest = guests.first(where: { $0.spec == spec }) else {
            throw KitError("the kit has no '\(spec)' guest (have \(guests.map(\.spec))); "
                + "scripts/test-guests starts: idle burn=100 burn=50 idle,balloon=none idle,stats=0")
        }
        return guest
    }

    func steady() -> [CycleRecord] { cycles.filter { $0.phase == .steady } }
}

/// The steady intervals (pairs of consecutive cycles) in which `name`'s vCPU waited for a host CPU less than
/// `Scenario.contentionLimit` of the time: its cpu_util there is what the guest asked for.
func uncontendedIntervals(_ cycles: [CycleRecord], _ name: String) -> [(from: CycleRecord, to: CycleRecord)] {
    let steady = cycles.filter { $0.phase == .steady }
    return zip(steady, steady.dropFirst()).compactMap { from, to in
        guard let a = from.vcpu[name], let b = to.vcpu[name], to.at > from.at, b.delay >= a.delay else { return nil }
        let waited = Double(b.delay - a.delay) / ((to.at - from.at) * 1e9)
        return waited < Scenario.contentionLimit ? (from, to) : nil
    }
}

/// Runs the scenario once for all tests of the suite.
actor Scenario {
    static let shared = Scenario()
    private var task: Task<ScenarioRecord, any Error>?

    func record() async throws -> ScenarioRecord {
        if let task { return try await task.value }
        let task = Task { try await Self.run() }
        self.task = task
        return try await task.value
    }

    static let interval = 2.0
    static let steadyCycles = 13
    static let maxSteadyCycles = 60
    static let cleanIntervalsWanted = 8
    /// The most of an interval a vCPU may have waited on the host's run queue for that interval to count as
    /// uncontended.
    static let contentionLimit = 0.05
    static let hogDelay = 16

    private static func run() async throws -> ScenarioRecord {
        let started = SampleClock.monotonic()
        let kit = try GuestKit.fromEnvironment()
        let guests = kit.guests()
        let specs = ["idle", "burn=100", "burn=50", "idle,balloon=none", "idle,stats=0"]
        for spec in specs where !guests.contains(where: { $0.spec == spec }) {
            throw KitError("the kit has no '\(spec)' guest (have \(guests.map(\.spec))): run scripts/test-guests, "
                + "or scripts/guests/kit up 5 idle burn=100 burn=50 idle,balloon=none idle,stats=0")
        }
        let store = CapturingLogHandler.Store()
        let logger = Logger(label: "virtmeter.poll.test") { _ in CapturingLogHandler(store: store) }
        let libvirt = try LibvirtHypervisor(uri: kit.uri, logger: Logger(label: "virtmeter.libvirt.test") { _ in
            CapturingLogHandler(store: store)
        })
        let hypervisor = RecordingHypervisor(libvirt)
        // The built-in meters and the declared ones of the README's guide (DeclaredMeterGuestTests).
        let declared = try DeclaredGuestMeters.load()
        libvirt.request(StatsFieldRequest(meters: declared))
        var poller = Poller(hypervisor: hypervisor, meters: MeterRegistry.builtIn.meters + declared,
                            stamper: SampleStamper(host: "guest-tests", signer: SampleSigner(secret: "")),
                            logger: logger)
        var cycles: [CycleRecord] = []
        var problems: [String] = []
        let names = guests.map(\.name)
        let idle = guests.first { $0.spec == "idle" }?.name

        func cycle(_ phase: CycleRecord.Phase, watching: [String]) async throws {
            let began = ContinuousClock.now
            // The records are kept as they are and decoded once the run is over: parsing JSON (in a debug build)
            // while the burners are measured would take host CPU from them.
            var written: [SampleRecords] = []
            _ = try await poller.cycle { records in written.append(records) }
            let at = SampleClock.monotonic()
            let snapshots = hypervisor.last.withLock { $0 }
            let counters = libvirt.lastCounters
            var byName: [String: DomainSnapshot] = [:]
            var nameOf: [String: String] = [:]
            for snapshot in snapshots {
                byName[snapshot.name] = snapshot
                nameOf[snapshot.uuid] = snapshot.name
            }
            var rss: [String: UInt64] = [:]
            var virshCPU: [String: UInt64] = [:]
            var memory: [String: GuestMemory] = [:]
            var events: [String: Set<String>] = [:]
            for name in watching {
                if byName[name] != nil {
                    rss[name] = kit.hostRSSKiB(name)
                    if let stats = try? await kit.domstats(name, ["--cpu-total"]),
                       let time = stats["cpu.time"].flatMap(UInt64.init) {
                        virshCPU[name] = time
                    }
                }
                memory[name] = kit.latestMemory(name)
                let log = kit.serialLog(name)
                var seen = Set<String>()
                for event in ["VMTEST ready", "VMTEST hog allocating", "VMTEST hog holding"] where log.contains(event) {
                    seen.insert(event)
                }
                events[name] = seen
            }
            let vcpu = phase == .steady ? await vcpuClocks() : [:]
            var memstat: [String: [String: UInt64]] = [:]
            var block: [String: [String: String]] = [:]
            for name in watching where byName[name] != nil && (name == idle || name == "vmtest-hog") {
                memstat[name] = try? await kit.dommemstat(name)
            }
            if watching.contains("vmtest-io"), byName["vmtest-io"] != nil {
                block["vmtest-io"] = try? await kit.domstats("vmtest-io", ["--block"])
            }
            cycles.append(CycleRecord(index: cycles.count, phase: phase, at: at, snapshots: byName, values: [:],
                                      samples: [], records: written, names: nameOf, counters: counters, hostRSSKiB: rss,
                                      virshCPUTime: virshCPU, guestMemory: memory, events: events, vcpu: vcpu,
                                      dommemstat: memstat, virshBlock: block))
            try await Task.sleep(until: began + .milliseconds(Int64(interval * 1000)))
        }

        func vcpuClocks() async -> [String: VCPUClock] {
            var clocks: [String: VCPUClock] = [:]
            let all = (try? await kit.domstats(names, ["--vcpu"])) ?? [:]
            for (name, stats) in all {
                guard let time = stats["vcpu.0.time"].flatMap(UInt64.init),
                      let delay = stats["vcpu.0.delay"].flatMap(UInt64.init)
                else { continue }
                clocks[name] = VCPUClock(time: time, delay: delay)
            }
            return clocks
        }

        // Steady phase: the kit's guests as they are, nothing booting. It goes on (up to maxSteadyCycles) until
        // the burn guests had enough intervals with a CPU of their own: on a shared 2-core host other work
        // (a compiler) starves them, and the guest then really burns less.
        let before = await vcpuClocks()
        let burners = guests.filter { $0.workload.hasPrefix("burn=") }.map(\.name)
        while cycles.count < maxSteadyCycles {
            try await cycle(.steady, watching: names)
            guard cycles.count >= steadyCycles else { continue }
            let clean = burners.map { name in uncontendedIntervals(cycles, name).count }
            if clean.allSatisfy({ $0 >= cleanIntervalsWanted }) { break }
        }
        let after = await vcpuClocks()

        // Churn: destroy the idle guest, start a hog guest and an io guest, keep polling.
        let destroyed = try guests.first { $0.spec == "idle" }.map(\.name) ?? { throw KitError("no idle guest") }()
        _ = try await kit.kit(["destroy", destroyed])
        let destroyedBeforeCycle = cycles.count
        let hog = "vmtest-hog", io = "vmtest-io"
        var startedAt: [String: Double] = [:]
        for (name, spec) in [(hog, "hog=64:\(hogDelay)"), (io, "io")] {
            do {
                _ = try await kit.kit(["start", name, spec, "--no-wait"])
                startedAt[name] = SampleClock.monotonic()
            } catch {
                problems.append("kit start \(name) \(spec) failed: \(error)")
            }
        }
        let startedBeforeCycle = cycles.count
        let watching = names.filter { $0 != destroyed } + [hog, io]
        var midRunBoot: [String: Double] = [:]
        let deadline = SampleClock.monotonic() + 200
        var holdingSince: Int?
        while SampleClock.monotonic() < deadline, !startedAt.isEmpty {
            try await cycle(.churn, watching: watching)
            let last = cycles[cycles.count - 1]
            for (name, start) in startedAt where midRunBoot[name] == nil {
                if last.events[name]?.contains("VMTEST ready") == true { midRunBoot[name] = last.at - start }
            }
            if holdingSince == nil, last.events[hog]?.contains("VMTEST hog holding") == true {
                holdingSince = last.index
            }
            let ioDone = startedAt[io] == nil || midRunBoot[io] != nil
            if let holdingSince, last.index >= holdingSince + 5, ioDone { break }
            if startedAt[hog] == nil, ioDone, cycles.count >= startedBeforeCycle + 10 { break }
        }
        if holdingSince == nil { problems.append("the hog guest never reported 'VMTEST hog holding' within 200 s") }

        // Leave the kit as it was for a second run: the mid-run guests go, the idle guest comes back.
        for name in [hog, io] { _ = try? await kit.kit(["destroy", name]) }
        _ = try? await kit.kit(["start", destroyed, "idle", "--no-wait"])

        for index in cycles.indices { try cycles[index].decode() }
        let warnings = store.all.filter { $0.level == .warning }.map { (message: $0.message, metadata: $0.metadata) }
        return ScenarioRecord(
            kit: kit, guests: guests, cycles: cycles, warnings: warnings, interval: interval, vcpuBefore: before,
            vcpuAfter: after, destroyed: destroyed, destroyedBeforeCycle: destroyedBeforeCycle, hogGuest: hog,
            ioGuest: io, startedBeforeCycle: startedBeforeCycle, midRunBootSeconds: midRunBoot, problems: problems,
            seconds: SampleClock.monotonic() - started)
    }
}

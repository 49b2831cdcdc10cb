import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals
import VirtMeterCore

/// The polling loop of `virtmeter run`: each source on its own interval, one libvirt read for all sources due at
/// the same moment, samples appended to the spool (never waiting for a publisher). On graceful shutdown it lets the
/// cycle in flight finish, then finishes the spool so the publishers drain it. `requestReload()` (SIGHUP) reloads
/// polling.yaml before the next cycle; a bad file keeps the sources in use.
public final class PollService: Service {
    private let hypervisor: any Hypervisor
    private let stamper: SampleStamper
    private let samplesPerRecord: Int
    private let spool: Spool
    private let stats: AgentStats
    private let logger: Logger
    private let summaryEveryCycles: Int
    private let loadPolling: @Sendable () throws -> PollingConfiguration
    private let initialPolling: PollingConfiguration
    private let reloadRequested = Mutex(false)
    /// When libvirt was first found unreachable in the current outage.
    private let libvirtDownSince = Mutex<Double?>(nil)

    /// Polls `hypervisor` and writes samples stamped by `stamper` to `spool`, in records of `samplesPerRecord` (the
    /// samples of one AMQP message). `loadPolling` reads polling.yaml again on reload; `polling` is what it returned
    /// at start-up.
    public init(hypervisor: any Hypervisor, stamper: SampleStamper, samplesPerRecord: Int,
                polling: PollingConfiguration, loadPolling: @escaping @Sendable () throws -> PollingConfiguration,
                spool: Spool, stats: AgentStats, summaryEveryCycles: Int, logger: Logger) {
        self.hypervisor = hypervisor
        self.stamper = stamper
        self.samplesPerRecord = samplesPerRecord
        self.initialPolling = polling
        self.loadPolling = loadPolling
        self.spool = spool
        self.stats = stats
        self.summaryEveryCycles = summaryEveryCycles
        self.logger = logger
    }

    /// Asks for polling.yaml to be read again before the next cycle.
    public func requestReload() {
        reloadRequested.withLock { $0 = true }
    }

    public func run() async throws {
        defer { spool.finish() }
        var poller = Poller(hypervisor: hypervisor, stamper: stamper, samplesPerRecord: samplesPerRecord,
                            logger: logger)
        var polling = initialPolling
        var schedule = Schedule(sources: Self.scheduled(polling), start: Clock.monotonic())
        while !Task.isShuttingDownGracefully {
            if reloadRequested.withLock({ let requested = $0; $0 = false; return requested }) {
                polling = reload(polling, schedule: &schedule, poller: &poller)
            }
            guard let (time, due) = schedule.next() else { return }
            // Sleep in short steps so a reload or a shutdown is not held up by a long interval.
            let wait = time - Clock.monotonic()
            if wait > 0 {
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(min(wait, 0.5))) }
                } catch {
                    return
                }
                continue
            }
            await cycle(polling.sources.filter { due.contains($0.name) }, poller: &poller)
            let skipped = schedule.advance(due, now: Clock.monotonic())
            if !skipped.isEmpty {
                stats.update { $0.skippedTicks += skipped.values.reduce(0, +) }
                logger.warning("cycle overran the interval: ticks skipped",
                               metadata: ["skipped": "\(skipped.sorted { $0.key < $1.key })"])
            }
        }
    }

    /// One cycle for the `sources` due now, its records written to the spool as they are made and committed at the
    /// end; a failed libvirt read is logged once (and its return once), and the next cycle tries again.
    private func cycle(_ sources: [PollingSource], poller: inout Poller) async {
        let result: CycleResult
        do {
            result = try await poller.cycle(sources.map(\.group)) { records in await spool.write(records) }
            if let since = libvirtDownSince.withLock({ let since = $0; $0 = nil; return since }) {
                logger.notice("libvirt is back",
                              metadata: ["outage_seconds": "\(Int((Clock.monotonic() - since).rounded()))"])
            }
        } catch {
            if libvirtDownSince.withLock({ let first = $0 == nil; if first { $0 = Clock.monotonic() }; return first }) {
                logger.error("libvirt unreachable: polling resumes when it is back", metadata: ["error": "\(error)"])
            } else {
                logger.debug("libvirt still unreachable", metadata: ["error": "\(error)"])
            }
            return
        }
        await spool.commit()
        let counters = stats.update { counters -> AgentStats.Counters in
            counters.cycles += 1
            counters.domains = result.domains
            counters.samplesProduced += result.samples
            counters.samplesRefused += result.refused
            return counters
        }
        logger.debug("cycle done", metadata: [
            "sources": "\(sources.map(\.name).joined(separator: ","))", "domains": "\(result.domains)",
            "samples": "\(result.samples)", "refused": "\(result.refused)",
            "inspect_ms": "\(Int(result.inspectSeconds * 1000))", "build_ms": "\(Int(result.buildSeconds * 1000))",
            "spool_ms": "\(Int(result.deliverSeconds * 1000))",
        ])
        if summaryEveryCycles > 0, counters.cycles % summaryEveryCycles == 0 { summarize(counters) }
    }

    /// The sources worth a cycle: those with at least one meter virtmeter has.
    static func scheduled(_ polling: PollingConfiguration) -> [(name: String, interval: Double)] {
        polling.sources.filter { !$0.meters.isEmpty }.map { ($0.name, $0.interval) }
    }

    private func summarize(_ counters: AgentStats.Counters) {
        let latency = counters.publishCalls > 0 ? counters.publishSeconds / Double(counters.publishCalls) * 1000 : 0
        let spooled = spool.currentCounters
        logger.info("summary", metadata: [
            "cycles": "\(counters.cycles)", "domains": "\(counters.domains)",
            "samples_produced": "\(counters.samplesProduced)", "samples_published": "\(counters.samplesPublished)",
            "publish_failures": "\(counters.publishFailures)", "samples_lost": "\(spooled.lostSamples)",
            "spool_records": "\(spooled.pendingRecords)", "spool_dropped_samples": "\(spooled.droppedSamples)",
            "spool_corrupt_records": "\(spooled.corruptRecords)", "skipped_ticks": "\(counters.skippedTicks)",
            "publish_latency_ms": "\(Int(latency.rounded()))",
        ])
    }

    private func reload(_ current: PollingConfiguration, schedule: inout Schedule, poller: inout Poller)
        -> PollingConfiguration {
        do {
            let polling = try loadPolling()
            for warning in polling.warnings { logger.warning("polling.yaml", metadata: ["warning": "\(warning)"]) }
            schedule.replace(with: Self.scheduled(polling), now: Clock.monotonic())
            poller.keepGroups(Set(polling.sources.map(\.name)))
            logger.info("polling.yaml reloaded", metadata: ["sources": "\(polling.sources.map(\.name))"])
            return polling
        } catch {
            logger.error("polling.yaml reload failed, keeping the sources in use", metadata: ["error": "\(error)"])
            return current
        }
    }
}

/// Turns SIGHUP into `PollService.requestReload()` until the agent shuts down.
public final class ReloadOnHangup: Service {
    private let pollService: PollService

    public init(_ pollService: PollService) { self.pollService = pollService }

    public func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups { self.pollService.requestReload() }
        }
    }
}

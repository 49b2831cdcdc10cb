import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals
import VirtMeterCore

/// The polling loop of `virtmeter run`: each source on its own interval, one libvirt read for all sources due at
/// the same moment, samples appended to the spool (never waiting for a publisher). On graceful shutdown it lets the
/// cycle in flight finish, then finishes the spool so the publishers drain it. `requestReload()` (SIGHUP) reloads
/// polling.yaml and the declared meters before the next cycle; a bad file keeps the meters and sources in use.
package final class PollService: Service {
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
    private let libvirtDownSince = Mutex<Duration?>(nil)
    private let clock: ElapsedClock
    private let retry: Backoff
    private let domainsNotAnswering: @Sendable () -> Int
    private let reloaded: @Sendable (PollingConfiguration) -> Void
    private let vitals: AgentVitals?

    /// Polls `hypervisor` and writes samples stamped by `stamper` to `spool`, in records of `samplesPerRecord` (the
    /// samples of one AMQP message). `loadPolling` reads polling.yaml again on reload; `polling` is what it returned
    /// at start-up. While libvirt is unreachable the cycle is tried again after `retry`'s delays (at most a quarter of
    /// the shortest interval apart), so polling resumes as soon as libvirt answers. `domainsNotAnswering` tells how
    /// many domains the last cycle left out because they did not answer in time (for the summary). `reloaded` is
    /// told of each configuration a reload put in use. `vitals`, when given, hears of every cycle (the Prometheus
    /// endpoint, health, systemd's notifications). The schedule, the retry delays and the cycles' durations are
    /// measured on `clock`, and the loop sleeps on it.
    package init(hypervisor: any Hypervisor, stamper: SampleStamper, samplesPerRecord: Int,
                polling: PollingConfiguration, loadPolling: @escaping @Sendable () throws -> PollingConfiguration,
                spool: Spool, stats: AgentStats, summaryEveryCycles: Int, retry: Backoff = Backoff(),
                domainsNotAnswering: @escaping @Sendable () -> Int = { 0 },
                reloaded: @escaping @Sendable (PollingConfiguration) -> Void = { _ in }, vitals: AgentVitals? = nil,
                clock: any Clock<Duration> = ContinuousClock(), logger: Logger) {
        self.hypervisor = hypervisor
        self.clock = ElapsedClock(clock)
        self.reloaded = reloaded
        self.vitals = vitals
        self.retry = retry
        self.domainsNotAnswering = domainsNotAnswering
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
    package func requestReload() {
        reloadRequested.withLock { $0 = true }
    }

    package func run() async throws {
        defer { spool.finish() }
        // With the Prometheus endpoint, the cycles' snapshots go to its exposition too.
        var poller = Poller(hypervisor: vitals?.exposition?.observing(hypervisor) ?? hypervisor, stamper: stamper,
                            samplesPerRecord: samplesPerRecord, logger: logger)
        var polling = initialPolling
        var schedule = Schedule(sources: Self.scheduled(polling), start: clock.now)
        // While libvirt is unreachable: the failed attempts so far, and when to try again if before the next tick.
        var failedAttempts = 0
        var retryAt: Duration?
        func failed() {
            failedAttempts += 1
            let shortest = Self.scheduled(polling).map(\.interval).min() ?? .seconds(1)
            retryAt = clock.now + min(retry.delay(attempt: failedAttempts), shortest / 4)
        }
        while !Task.isShuttingDownGracefully {
            vitals?.loopTurned()
            if reloadRequested.withLock({ let requested = $0; $0 = false; return requested }) {
                polling = reload(polling, schedule: &schedule, poller: &poller)
            }
            guard let (time, due) = schedule.next() else { return }
            let retrying = retryAt.map { $0 < time } ?? false
            // Sleep in short steps so a reload is not held up by a long interval (a shutdown ends the sleep).
            let wake = retrying ? retryAt ?? time : time, now = clock.now
            if wake > now {
                do {
                    try await cancelWhenGracefulShutdown { [clock] in
                        try await clock.sleep(until: min(wake, now + Self.sleepStep))
                    }
                } catch {
                    return
                }
                continue
            }
            if retrying {
                // Between ticks: every source at once; once libvirt answers, the schedule starts again from now.
                let all = Self.scheduled(polling).map(\.name)
                if await cycle(polling.sources.filter { all.contains($0.name) }, poller: &poller) {
                    schedule = Schedule(sources: Self.scheduled(polling), start: clock.now)
                    _ = schedule.advance(all, now: clock.now)
                    (failedAttempts, retryAt) = (0, nil)
                } else {
                    failed()
                }
                continue
            }
            if await cycle(polling.sources.filter { due.contains($0.name) }, poller: &poller) {
                (failedAttempts, retryAt) = (0, nil)
            } else {
                failed()
            }
            let skipped = schedule.advance(due, now: clock.now)
            if !skipped.isEmpty {
                stats.update { $0.skippedTicks += skipped.values.reduce(0, +) }
                logger.warning("cycle overran the interval: ticks skipped",
                               metadata: ["virtmeter.poll.skipped_ticks": "\(skipped.sorted { $0.key < $1.key })"])
            }
        }
    }

    /// One cycle for the `sources` due now, its records written to the spool as they are made and committed at the
    /// end; a failed libvirt read is logged once (and its return once), and the caller tries again. Returns whether
    /// libvirt answered.
    private func cycle(_ sources: [PollingSource], poller: inout Poller) async -> Bool {
        let result: CycleResult
        let start = clock.now
        do {
            result = try await poller.cycle(sources.map(\.group)) { records in await spool.write(records) }
            if let since = libvirtDownSince.withLock({ let since = $0; $0 = nil; return since }) {
                logger.notice("libvirt is back", metadata: [
                    "virtmeter.libvirt.outage_seconds": "\(Int((clock.now - since).inSeconds.rounded()))",
                ])
            }
        } catch {
            let now = clock.now
            if libvirtDownSince.withLock({ let first = $0 == nil; if first { $0 = now }; return first }) {
                logger.error("libvirt unreachable: polling resumes when it is back", metadata: [
                    "virtmeter.libvirt.error": "\(error)",
                ])
            } else {
                logger.debug("libvirt still unreachable", metadata: ["virtmeter.libvirt.error": "\(error)"])
            }
            vitals?.cycleFailed()
            return false
        }
        await spool.commit()
        let counters = stats.update { counters -> AgentStats.Counters in
            counters.cycles += 1
            counters.domains = result.domains
            counters.samplesProduced += result.samples
            counters.samplesRefused += result.refused
            return counters
        }
        let notAnswering = domainsNotAnswering()
        vitals?.cycleCompleted(sources.map(\.group), result: result, seconds: (clock.now - start).inSeconds,
                               notAnswering: notAnswering)
        logger.debug("cycle done", metadata: [
            "virtmeter.poll.sources": "\(sources.map(\.name).joined(separator: ","))",
            "virtmeter.poll.domains": "\(result.domains)", "virtmeter.poll.domains_not_answering": "\(notAnswering)",
            "virtmeter.poll.samples": "\(result.samples)", "virtmeter.poll.refused": "\(result.refused)",
            "virtmeter.poll.inspect_ms": "\(Int(result.inspectSeconds * 1000))",
            "virtmeter.poll.build_ms": "\(Int(result.buildSeconds * 1000))",
            "virtmeter.poll.spool_ms": "\(Int(result.deliverSeconds * 1000))",
        ])
        if summaryEveryCycles > 0, counters.cycles % summaryEveryCycles == 0 {
            summarize(counters, notAnswering: notAnswering)
        }
        return true
    }

    /// The longest the loop sleeps at once, so a reload is taken within this long.
    static let sleepStep = Duration.milliseconds(500)

    /// The sources worth a cycle: those with at least one meter virtmeter has.
    static func scheduled(_ polling: PollingConfiguration) -> [(name: String, interval: Duration)] {
        polling.sources.filter { !$0.meters.isEmpty }.map { ($0.name, .seconds($0.interval)) }
    }

    private func summarize(_ counters: AgentStats.Counters, notAnswering: Int) {
        let latency = counters.publishCalls > 0 ? counters.publishSeconds / Double(counters.publishCalls) * 1000 : 0
        let spooled = spool.currentCounters
        logger.info("summary", metadata: [
            "virtmeter.agent.cycles": "\(counters.cycles)", "virtmeter.agent.domains": "\(counters.domains)",
            "virtmeter.agent.domains_not_answering": "\(notAnswering)",
            "virtmeter.agent.samples_produced": "\(counters.samplesProduced)",
            "virtmeter.agent.samples_published": "\(counters.samplesPublished)",
            "virtmeter.agent.publish_failures": "\(counters.publishFailures)",
            "virtmeter.agent.samples_lost": "\(spooled.lostSamples)",
            "virtmeter.agent.spool_records": "\(spooled.pendingRecords)",
            "virtmeter.agent.spool_dropped_samples": "\(spooled.droppedSamples)",
            "virtmeter.agent.spool_corrupt_records": "\(spooled.corruptRecords)",
            "virtmeter.agent.skipped_ticks": "\(counters.skippedTicks)",
            "virtmeter.agent.publish_latency_ms": "\(Int(latency.rounded()))",
        ])
    }

    private func reload(_ current: PollingConfiguration, schedule: inout Schedule, poller: inout Poller)
        -> PollingConfiguration {
        do {
            let polling = try loadPolling()
            for warning in polling.warnings {
                logger.warning("polling.yaml", metadata: ["virtmeter.config.warning": "\(warning)"])
            }
            schedule.replace(with: Self.scheduled(polling), now: clock.now)
            poller.keepGroups(Set(polling.sources.map(\.name)))
            reloaded(polling)
            vitals?.exposition?.keepSources(Set(polling.sources.map(\.name)))
            vitals?.health.setInterval(Self.scheduled(polling).map(\.interval).min()?.inSeconds ?? 300)
            let declared = Set(polling.sources.flatMap(\.meters).compactMap { ($0 as? DeclaredMeter)?.name })
            logger.info("polling.yaml reloaded", metadata: [
                "virtmeter.config.sources": "\(polling.sources.map(\.name))",
                "virtmeter.config.declared_meters": "\(declared.count)",
            ])
            return polling
        } catch {
            logger.error("reload failed, keeping the meters and sources in use", metadata: [
                "virtmeter.config.error": "\(error)",
            ])
            return current
        }
    }
}

/// Turns SIGHUP into `PollService.requestReload()` until the agent shuts down.
package final class ReloadOnHangup: Service {
    private let pollService: PollService

    package init(_ pollService: PollService) { self.pollService = pollService }

    package func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups { self.pollService.requestReload() }
        }
    }
}

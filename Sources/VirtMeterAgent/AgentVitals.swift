import Foundation
import Metrics
import Synchronization
import VirtMeterCore

/// The agent's own metrics (`virtmeter_*`), instrumented with swift-metrics on a factory of the caller's (the
/// Prometheus endpoint's registry). Units are in the names, as Prometheus's conventions ask.
package final class AgentMetrics: Sendable {
    let cycles: Counter
    let cycleDuration: Metrics.Timer
    let domains: Gauge
    let domainsNotAnswering: Gauge
    let samplesProduced: Counter
    let samplesRefused: Counter
    let samplesPublished: Counter
    let publishFailures: Counter
    let publishLatency: Metrics.Timer
    let brokerUp: Gauge
    let libvirtUp: Gauge
    let spoolBytes: Gauge
    let spoolRecords: Gauge
    let samplesDropped: Counter
    let samplesLost: Counter
    let spoolCorruptRecords: Counter
    let buildInfo: Gauge
    /// The spool's counters at the last `refresh`, so its totals become counter increments.
    private let spoolSeen = Mutex(SpoolCounters())

    /// Every metric made by `factory`; `virtmeter_build_info{version=...}` is 1.
    package init(factory: any MetricsFactory, version: String) {
        func counter(_ name: String) -> Counter { Counter(label: name, factory: factory) }
        func gauge(_ name: String) -> Gauge { Gauge(label: name, factory: factory) }
        cycles = counter("virtmeter_cycles_total")
        cycleDuration = Metrics.Timer(label: "virtmeter_cycle_duration_seconds", factory: factory)
        domains = gauge("virtmeter_domains")
        domainsNotAnswering = gauge("virtmeter_domains_not_answering")
        samplesProduced = counter("virtmeter_samples_produced_total")
        samplesRefused = counter("virtmeter_samples_refused_total")
        samplesPublished = counter("virtmeter_samples_published_total")
        publishFailures = counter("virtmeter_publish_failures_total")
        publishLatency = Metrics.Timer(label: "virtmeter_publish_latency_seconds", factory: factory)
        brokerUp = gauge("virtmeter_broker_up")
        libvirtUp = gauge("virtmeter_libvirt_up")
        spoolBytes = gauge("virtmeter_spool_bytes")
        spoolRecords = gauge("virtmeter_spool_records")
        samplesDropped = counter("virtmeter_samples_dropped_total")
        samplesLost = counter("virtmeter_samples_lost_total")
        spoolCorruptRecords = counter("virtmeter_spool_corrupt_records_total")
        buildInfo = Gauge(label: "virtmeter_build_info", dimensions: [("version", version)], factory: factory)
        buildInfo.record(1)
        // Nothing is known before the first cycle and the first delivery.
        libvirtUp.record(0)
        brokerUp.record(0)
    }

    /// Brings the spool's figures up to date (at each scrape: the spool keeps them behind a lock of its own).
    package func refresh(spool: SpoolCounters) {
        spoolBytes.record(spool.pendingBytes)
        spoolRecords.record(spool.pendingRecords)
        let seen = spoolSeen.withLock { seen in
            defer { seen = spool }
            return seen
        }
        if spool.droppedSamples > seen.droppedSamples {
            samplesDropped.increment(by: spool.droppedSamples - seen.droppedSamples)
        }
        if spool.lostSamples > seen.lostSamples { samplesLost.increment(by: spool.lostSamples - seen.lostSamples) }
        if spool.corruptRecords > seen.corruptRecords {
            spoolCorruptRecords.increment(by: spool.corruptRecords - seen.corruptRecords)
        }
    }
}

/// Whether the agent is healthy, for `GET /healthz`: cycles complete on schedule, libvirt answers, the spool keeps
/// under its cap. The limit is a number of the shortest polling interval.
package final class AgentHealth: Sendable {
    private struct State {
        var started: Double
        var interval: Double
        var lastCycle: Double?
        var libvirtDownSince: Double?
        var droppedSeen = 0
        var droppedAt: Double?
    }

    /// The limit in intervals.
    package let limitIntervals: Int
    private let state: Mutex<State>

    /// Healthy until `limitIntervals` times `interval` seconds pass without a completed cycle (from `now` at first).
    package init(limitIntervals: Int, interval: Double, now: Double = SampleClock.monotonic()) {
        self.limitIntervals = limitIntervals
        state = Mutex(State(started: now, interval: interval))
    }

    /// The shortest polling interval changed (polling.yaml reloaded).
    package func setInterval(_ interval: Double) { state.withLock { $0.interval = interval } }

    func cycleCompleted(now: Double) {
        state.withLock {
            $0.lastCycle = now
            $0.libvirtDownSince = nil
        }
    }

    func libvirtFailed(now: Double) {
        state.withLock { if $0.libvirtDownSince == nil { $0.libvirtDownSince = now } }
    }

    /// Nil when healthy, else the one-line reason: libvirt unreachable, or no cycle completed, for longer than the
    /// limit, or the spool dropped samples (over its cap) within the limit.
    package func problem(spool: SpoolCounters, now: Double = SampleClock.monotonic()) -> String? {
        state.withLock { state in
            let limit = Double(limitIntervals) * state.interval
            let limitText = "limit \(limitIntervals) intervals = \(seconds(limit)) s"
            if spool.droppedSamples > state.droppedSeen {
                state.droppedSeen = spool.droppedSamples
                state.droppedAt = now
            }
            if let since = state.libvirtDownSince, now - since > limit {
                return "libvirt unreachable for \(seconds(now - since)) s (\(limitText))"
            }
            let last = state.lastCycle ?? state.started
            if now - last > limit {
                return (state.lastCycle == nil ? "no poll cycle completed since start-up " : "no poll cycle completed ")
                    + "for \(seconds(now - last)) s (\(limitText))"
            }
            if let dropped = state.droppedAt, now - dropped <= limit {
                return "spool over its cap: \(spool.droppedSamples) samples dropped so far, the last "
                    + "\(seconds(now - dropped)) s ago (\(limitText))"
            }
            return nil
        }
    }

    private func seconds(_ value: Double) -> String { String(Int(value.rounded())) }
}

/// sd_notify without libsystemd: `READY=1` and `WATCHDOG=1` as datagrams on `$NOTIFY_SOCKET` (a path, or an
/// abstract socket when it starts with `@`). The watchdog is kept when `$WATCHDOG_USEC` asks for it (and
/// `$WATCHDOG_PID`, if set, is this process), at twice the rate systemd checks.
package final class SystemdNotifier: Sendable {
    private let socket: Int32
    private let address: sockaddr_un
    private let addressLength: socklen_t
    /// Seconds between two `WATCHDOG=1`; nil: no watchdog asked for.
    let watchdogEvery: Double?
    private let state = Mutex<(ready: Bool, lastWatchdog: Double)>((false, -Double.infinity))

    /// A notifier for `environment`'s `NOTIFY_SOCKET`, or nil when there is none (not started by systemd with
    /// Type=notify) or it cannot be used.
    package init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        socket = fd
        self.address = address
        addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        if let usec = environment["WATCHDOG_USEC"].flatMap(Double.init), usec > 0,
           environment["WATCHDOG_PID"].flatMap(pid_t.init).map({ $0 == getpid() }) ?? true {
            watchdogEvery = usec / 2e6
        } else {
            watchdogEvery = nil
        }
    }

    deinit { close(socket) }

    /// Sends `text` (`READY=1`, `WATCHDOG=1`); returns whether it went.
    @discardableResult
    package func send(_ text: String) -> Bool {
        var address = self.address
        let bytes = Array(text.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                sendto(socket, bytes, bytes.count, Int32(MSG_NOSIGNAL), sockaddrPointer, addressLength)
            }
        }
        return sent == bytes.count
    }

    /// `READY=1`, the first time only.
    func ready() {
        guard state.withLock({ let first = !$0.ready; $0.ready = true; return first }) else { return }
        send("READY=1")
    }

    /// `WATCHDOG=1` when the watchdog is on and half its time has passed since the last one.
    func watchdog(now: Double) {
        guard let every = watchdogEvery,
              state.withLock({ let due = now - $0.lastWatchdog >= every; if due { $0.lastWatchdog = now }; return due })
        else { return }
        send("WATCHDOG=1")
    }
}

/// What `virtmeter run` tells beyond its samples: the latest exposition and the agent's metrics for the Prometheus
/// endpoint, its health, and systemd's notifications. The poll and publish services report to it when it exists;
/// without the endpoint and without systemd's notify socket there is none, and they do nothing more than before.
package final class AgentVitals: Sendable {
    /// Nil without the Prometheus endpoint.
    package let exposition: CeilometerExposition?
    package let metrics: AgentMetrics?
    package let health: AgentHealth
    package let notifier: SystemdNotifier?

    package init(exposition: CeilometerExposition?, metrics: AgentMetrics?, health: AgentHealth,
                notifier: SystemdNotifier?) {
        self.exposition = exposition
        self.metrics = metrics
        self.health = health
        self.notifier = notifier
    }

    /// Each turn of the poll loop: the watchdog.
    func loopTurned() {
        notifier?.watchdog(now: SampleClock.monotonic())
    }

    /// A cycle of `groups` completed in `seconds`.
    func cycleCompleted(_ groups: [PollingGroup], result: CycleResult, seconds: Double, notAnswering: Int) {
        exposition?.cycleCompleted(groups)
        if let metrics {
            metrics.cycles.increment()
            metrics.cycleDuration.recordNanoseconds(Int64(seconds * 1e9))
            metrics.domains.record(result.domains)
            metrics.domainsNotAnswering.record(notAnswering)
            metrics.samplesProduced.increment(by: result.samples)
            if result.refused > 0 { metrics.samplesRefused.increment(by: result.refused) }
            metrics.libvirtUp.record(1)
        }
        health.cycleCompleted(now: SampleClock.monotonic())
        notifier?.ready()
    }

    /// A cycle found libvirt unreachable (or its reads past their deadlines).
    func cycleFailed() {
        metrics?.libvirtUp.record(0)
        health.libvirtFailed(now: SampleClock.monotonic())
        // Ready all the same: the agent runs and says why it is unhealthy; libvirtd may start after it.
        notifier?.ready()
    }

    /// A delivery to one publisher took `seconds`.
    func published(seconds: Double) {
        guard let metrics else { return }
        metrics.publishLatency.recordNanoseconds(Int64(seconds * 1e9))
        metrics.brokerUp.record(1)
    }

    /// Samples acknowledged: every publisher has them.
    func delivered(samples: Int) {
        metrics?.samplesPublished.increment(by: samples)
    }

    /// A delivery attempt failed.
    func publishFailed() {
        guard let metrics else { return }
        metrics.publishFailures.increment()
        metrics.brokerUp.record(0)
    }
}

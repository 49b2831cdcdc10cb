import Clocks
import Foundation
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing
import VirtMeterCore
import VirtMeterTestSupport
@testable import VirtMeterAgent

@Suite("schedules")
struct ScheduleTests {
    @Test("sources due at the same moment share a cycle; each keeps its own interval")
    func coalesce() {
        var schedule = Schedule(sources: [("fast", .seconds(1)), ("slow", .seconds(2))], start: .seconds(100))
        var cycles: [[String]] = []
        var times: [Duration] = []
        for _ in 0..<5 {
            guard let (time, due) = schedule.next() else { break }
            cycles.append(due.sorted())
            times.append(time)
            #expect(schedule.advance(due, now: time + .milliseconds(10)).isEmpty)
        }
        #expect(cycles == [["fast", "slow"], ["fast"], ["fast", "slow"], ["fast"], ["fast", "slow"]])
        #expect(times == (100...104).map { .seconds($0) })
    }

    @Test("a cycle that overruns skips the missed ticks instead of piling them up")
    func overrun() {
        var schedule = Schedule(sources: [("s", .seconds(1))], start: .zero)
        #expect(schedule.advance(["s"], now: .milliseconds(3500)) == ["s": 3])   // ticks 1, 2, 3 missed
        #expect(schedule.next()?.time == .seconds(4))
        #expect(schedule.advance(["s"], now: .seconds(5)) == ["s": 1])   // ending on a tick misses it
        #expect(schedule.next()?.time == .seconds(6))
    }

    @Test("a reload keeps the rhythm of unchanged sources and starts new ones now")
    func reload() {
        var schedule = Schedule(sources: [("a", .seconds(10)), ("b", .seconds(10))], start: .zero)
        _ = schedule.advance(["a", "b"], now: .milliseconds(100))
        schedule.replace(with: [("a", .seconds(10)), ("b", .seconds(5)), ("c", .seconds(1))], now: .seconds(3))
        #expect(schedule.entries.map(\.next) == [.seconds(10), .seconds(3), .seconds(3)])
    }
}

/// swift-clocks' test clock that also keeps the deadlines of the sleeps in progress, so that a test can let time pass
/// exactly to the next wake-up once whatever runs on the clock is asleep. Time moves only when the test moves it.
final class SteppedClock: Clock, Sendable {
    typealias Duration = Swift.Duration
    typealias Instant = TestClock<Swift.Duration>.Instant

    private let base = TestClock<Swift.Duration>()
    private let sleeping = Mutex<[Instant]>([])
    /// The deadline of every sleep asked for, as time since the clock was made.
    let deadlines = Mutex<[Duration]>([])

    var now: Instant { base.now }
    var minimumResolution: Duration { .zero }
    /// The time since the clock was made.
    var elapsed: Duration { Instant().duration(to: base.now) }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        sleeping.withLock { $0.append(deadline) }
        deadlines.withLock { $0.append(Instant().duration(to: deadline)) }
        defer { sleeping.withLock { _ = $0.remove(at: $0.firstIndex(of: deadline)!) } }
        try await base.sleep(until: deadline, tolerance: tolerance)
    }

    /// Returns once something sleeps on the clock (the test clock holds its suspension).
    func asleep() async {
        while (try? await base.checkSuspension()) != nil { await Task.yield() }
    }

    /// Moves time to the earliest wake-up of the sleeps in progress (there must be one) and wakes that sleeper.
    func advance() async {
        let deadline = sleeping.withLock { $0.min() }
        #expect(deadline != nil, "nothing sleeps on the clock")
        if let deadline { await base.advance(to: deadline) }
    }

    /// Lets time pass, a wake-up at a time, until `done` holds while everything on the clock is asleep.
    func run(until done: () -> Bool) async {
        await asleep()
        while !done() {
            await advance()
            await asleep()
        }
    }
}

struct LibvirtDown: Error {}

/// A hypervisor with one domain that notes (on the clock) when each read starts; a read takes `readTimes[n]` on the
/// clock (the last one for every later read) and throws while `failures` last. The domain's vCPU count, cpu time and
/// balloon (MiB) are the read's number (1, 2, ...), so each sample tells the cycle that made it.
final class ClockedHypervisor: Hypervisor {
    let clock: SteppedClock
    let readTimes: [Duration]
    let failures: Mutex<Int>
    let reads = Mutex<[Duration]>([])
    let inFlight = Mutex(0)
    let overlapped = Mutex(false)

    init(clock: SteppedClock, readTimes: [Duration] = [.zero], failures: Int = 0) {
        self.clock = clock
        self.readTimes = readTimes
        self.failures = Mutex(failures)
    }

    var readCount: Int { reads.withLock { $0.count } }

    func poll() async throws -> [DomainSnapshot] {
        let number = reads.withLock { reads in
            reads.append(clock.elapsed)
            return reads.count
        }
        inFlight.withLock { if $0 > 0 { overlapped.withLock { $0 = true } }; $0 += 1 }
        defer { inFlight.withLock { $0 -= 1 } }
        let readTime = readTimes[min(number, readTimes.count) - 1]
        if readTime > .zero { try await clock.sleep(for: readTime) }
        if failures.withLock({ let failing = $0 > 0; if failing { $0 -= 1 }; return failing }) { throw LibvirtDown() }
        return [DomainSnapshot(uuid: "u1", name: "d1", vcpuCount: number, cpuTime: UInt64(number),
                               maxMemoryKiB: 1 << 20, memoryKiB: 1 << 20,
                               balloon: BalloonStats(actual: UInt64(number) << 10), monotonicTime: Double(number))]
    }
}

struct BrokerDown: Error {}

/// A publisher that notes (on the clock) each call, fails the first `failures`, keeps what it got, and tells when it
/// was called and closed.
final class ClockedPublisher: Publisher {
    let clock: SteppedClock
    let failures: Mutex<Int>
    let calls = Mutex<[Duration]>([])
    let received = Mutex<[Sample]>([])
    let closed = Mutex(false)
    let called: AsyncStream<Void>
    private let callContinuation: AsyncStream<Void>.Continuation

    init(clock: SteppedClock, failures: Int = 0) {
        self.clock = clock
        self.failures = Mutex(failures)
        (called, callContinuation) = AsyncStream.makeStream()
    }

    var callCount: Int { calls.withLock { $0.count } }

    func publish(_ records: SampleRecords) async throws {
        calls.withLock { $0.append(clock.elapsed) }
        callContinuation.yield()
        if failures.withLock({ let failing = $0 > 0; if failing { $0 -= 1 }; return failing }) { throw BrokerDown() }
        let samples = try records.decodedSamples()
        received.withLock { $0 += samples }
    }

    func close() async { closed.withLock { $0 = true } }
}

/// polling.yaml as a reload reads it, and how many reloads were taken.
final class PollingFile: Sendable {
    let current: Mutex<PollingConfiguration>
    let reloads = Mutex(0)

    init(_ polling: PollingConfiguration) { current = Mutex(polling) }
}

/// A poll service on a stepped clock, with its hypervisor, spool (in a directory of its own) and statistics.
final class ClockedAgent {
    let clock = SteppedClock()
    let hypervisor: ClockedHypervisor
    let directory: URL
    let spool: Spool
    let stats = AgentStats()
    let pollingFile: PollingFile
    let poll: PollService

    /// `sources`: name, interval in seconds, meters.
    init(_ sources: [(String, Double, [String])], readTimes: [Duration] = [.zero], libvirtFailures: Int = 0,
         retry: Backoff = Backoff()) throws {
        hypervisor = ClockedHypervisor(clock: clock, readTimes: readTimes, failures: libvirtFailures)
        directory = try temporaryDirectory()
        let logger = Logger(label: "test")
        spool = try Spool(configuration: SpoolConfiguration(directory: directory.path, fsync: .never), logger: logger)
        let initial = try Self.configuration(sources)
        let file = PollingFile(initial)
        pollingFile = file
        poll = PollService(
            hypervisor: hypervisor, stamper: SampleStamper(host: "h", signer: SampleSigner(secret: "")),
            samplesPerRecord: 50, polling: initial, loadPolling: { file.current.withLock { $0 } },
            spool: spool, stats: stats, summaryEveryCycles: 0, retry: retry,
            reloaded: { _ in file.reloads.withLock { $0 += 1 } }, clock: clock, logger: logger)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    static func configuration(_ sources: [(String, Double, [String])]) throws -> PollingConfiguration {
        PollingConfiguration(sources: try sources.map {
            PollingSource(name: $0.0, interval: $0.1, selector: try MeterSelector($0.2))
        }, warnings: [])
    }

    /// A publish service for this agent's spool, on its clock.
    func publishService(_ publisher: ClockedPublisher, backoff: Backoff = Backoff()) -> PublishService {
        PublishService(spool: spool, publishers: [publisher], stats: stats, backoff: backoff, clock: clock,
                       logger: Logger(label: "test"))
    }

    /// The meters of each cycle's samples (by the read's number), sorted.
    static func metersByCycle(_ samples: [Sample]) -> [[String]] {
        var cycles: [Int: [String]] = [:]
        for sample in samples {
            let cycle = switch sample.volume {
            case .int(let value): Int(value)
            case .double(let value): Int(value)
            }
            cycles[cycle, default: []].append(sample.name)
        }
        return cycles.keys.sorted().map { cycles[$0]!.sorted() }
    }
}

/// Runs `services` under service-lifecycle's graceful-shutdown test kit: `drive` moves the clock and triggers the
/// shutdown; every service must then return.
func runServices(_ services: [any Service],
                 drive: (GracefulShutdownTestTrigger, inout ThrowingTaskGroup<Void, any Error>) async throws -> Void)
    async throws {
    try await testGracefulShutdown { trigger in
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in services { group.addTask { try await service.run() } }
            try await drive(trigger, &group)
            try await group.waitForAll()
        }
    }
}

/// Seconds as a duration, for the exact times below (all are sums of powers of two).
func s(_ seconds: Double) -> Duration { .seconds(seconds) }

@Suite("the polling service on a test clock", .timeLimit(.minutes(1)))
struct PollServiceTests {
    @Test("cycles start exactly when due, sources due together share one read, the loop sleeps in 0.5 s steps")
    func dueTimes() async throws {
        let agent = try ClockedAgent([("fast", 1, ["vcpus"]), ("slow", 2, ["cpu"])])
        try await runServices([agent.poll]) { trigger, _ in
            await agent.clock.run { agent.hypervisor.readCount == 5 }
            #expect(agent.clock.elapsed == s(4))
            trigger.triggerGracefulShutdown()
        }
        #expect(agent.hypervisor.reads.withLock { $0 } == [s(0), s(1), s(2), s(3), s(4)])
        #expect(agent.clock.deadlines.withLock { $0 } == (1...9).map { s(Double($0) / 2) })
        let samples = try await drainSpool(agent.spool)
        #expect(ClockedAgent.metersByCycle(samples)
                == [["cpu", "vcpus"], ["vcpus"], ["cpu", "vcpus"], ["vcpus"], ["cpu", "vcpus"]])
        let counters = agent.stats.snapshot
        #expect(counters.cycles == 5 && counters.skippedTicks == 0 && counters.samplesProduced == 8)
    }

    @Test("a read longer than the interval skips the missed ticks; the next cycle starts on the next tick")
    func overrun() async throws {
        let agent = try ClockedAgent([("s", 1, ["vcpus"])], readTimes: [s(2.5), .zero])
        try await runServices([agent.poll]) { trigger, _ in
            await agent.clock.run { agent.hypervisor.readCount == 3 }
            trigger.triggerGracefulShutdown()
        }
        #expect(agent.hypervisor.reads.withLock { $0 } == [s(0), s(3), s(4)])
        #expect(!agent.hypervisor.overlapped.withLock { $0 })
        #expect(agent.stats.snapshot.skippedTicks == 2)   // the ticks at 1 s and 2 s
        #expect(ClockedAgent.metersByCycle(try await drainSpool(agent.spool)) == [["vcpus"], ["vcpus"], ["vcpus"]])
    }

    @Test("while libvirt is down the cycle is retried with backoff, capped at a quarter of the shortest interval")
    func retryBackoff() async throws {
        // Delays 0.125, 0.25, 0.5, then 1 and 2 capped at 2 s / 4 = 0.5; the sixth read answers and the schedule
        // starts again from then.
        let agent = try ClockedAgent([("s", 2, ["vcpus"])], libvirtFailures: 5,
                                     retry: Backoff(initial: 0.125, maximum: 30, jitter: 1...1))
        try await runServices([agent.poll]) { trigger, _ in
            await agent.clock.run { agent.hypervisor.readCount == 7 }
            trigger.triggerGracefulShutdown()
        }
        #expect(agent.hypervisor.reads.withLock { $0 }
                == [s(0), s(0.125), s(0.375), s(0.875), s(1.375), s(1.875), s(3.875)])
        let counters = agent.stats.snapshot
        #expect(counters.cycles == 2 && counters.skippedTicks == 0)
        #expect(ClockedAgent.metersByCycle(try await drainSpool(agent.spool)) == [["vcpus"], ["vcpus"]])
    }

    @Test("a reload replaces the schedule: unchanged sources keep their rhythm, changed and new ones start now")
    func reload() async throws {
        let agent = try ClockedAgent([("a", 1, ["cpu"]), ("b", 1, ["vcpus"])])
        try await runServices([agent.poll]) { trigger, _ in
            await agent.clock.run { agent.hypervisor.readCount == 1 }
            #expect(agent.clock.elapsed == .zero)
            agent.pollingFile.current.withLock {
                $0 = try! ClockedAgent.configuration([("a", 1, ["cpu"]), ("b", 2, ["vcpus"]),
                                                      ("c", 0.5, ["memory"])])
            }
            agent.poll.requestReload()
            await agent.clock.run { agent.hypervisor.readCount == 5 }
            trigger.triggerGracefulShutdown()
        }
        // The reload is taken at the end of the first 0.5 s sleep: b (new interval) and c (new) are due then; a
        // keeps its tick at 1 s, where c joins it; b's next is 2.5 s.
        #expect(agent.hypervisor.reads.withLock { $0 } == [s(0), s(0.5), s(1), s(1.5), s(2)])
        #expect(ClockedAgent.metersByCycle(try await drainSpool(agent.spool))
                == [["cpu", "vcpus"], ["memory", "vcpus"], ["cpu", "memory"], ["memory"], ["cpu", "memory"]])
        #expect(agent.pollingFile.reloads.withLock { $0 } == 1)
    }
}

@Suite("graceful shutdown (service-lifecycle's test kit)", .timeLimit(.minutes(1)))
struct GracefulShutdownTests {
    @Test("asleep between cycles, polling stops at once; publishing delivers every sample, then closes")
    func betweenCycles() async throws {
        let agent = try ClockedAgent([("s", 1, ["cpu", "vcpus"])])
        let publisher = ClockedPublisher(clock: agent.clock)
        try await runServices([agent.poll, agent.publishService(publisher)]) { trigger, _ in
            await agent.clock.run { agent.hypervisor.readCount == 3 }
            trigger.triggerGracefulShutdown()
        }
        #expect(agent.clock.elapsed == s(2), "the shutdown did not wait for the next tick")
        #expect(agent.hypervisor.readCount == 3)
        #expect(ClockedAgent.metersByCycle(publisher.received.withLock { $0 })
                == [["cpu", "vcpus"], ["cpu", "vcpus"], ["cpu", "vcpus"]])
        #expect(publisher.closed.withLock { $0 })
        #expect(agent.stats.snapshot.samplesPublished == 6 && agent.spool.currentCounters.pendingRecords == 0)
    }

    @Test("during a cycle, polling finishes the cycle and stops; its samples are delivered")
    func duringCycle() async throws {
        let agent = try ClockedAgent([("s", 1, ["vcpus"])], readTimes: [.zero, .zero, s(0.25)])
        let publisher = ClockedPublisher(clock: agent.clock)
        try await runServices([agent.poll, agent.publishService(publisher)]) { trigger, _ in
            // The third read is in progress: the hypervisor sleeps until 2.25 s.
            await agent.clock.run { agent.hypervisor.readCount == 3 }
            trigger.triggerGracefulShutdown()
            await agent.clock.advance()
        }
        #expect(agent.clock.elapsed == s(2.25))
        #expect(agent.hypervisor.readCount == 3)
        #expect(ClockedAgent.metersByCycle(publisher.received.withLock { $0 }) == [["vcpus"], ["vcpus"], ["vcpus"]])
        #expect(agent.stats.snapshot.cycles == 3 && agent.spool.currentCounters.pendingRecords == 0)
        #expect(publisher.closed.withLock { $0 })
    }

    @Test("what could not be published when the shutdown timeout cancels publishing stays in the spool")
    func undeliveredStays() async throws {
        let agent = try ClockedAgent([("s", 1, ["cpu", "vcpus"])])
        let publisher = ClockedPublisher(clock: agent.clock, failures: .max)
        try await runServices([agent.poll, agent.publishService(publisher)]) { trigger, group in
            // The first cycle is in the spool and the broker refused it: publishing waits to retry.
            var calls = publisher.called.makeAsyncIterator()
            _ = await calls.next()
            trigger.triggerGracefulShutdown()
            // Polling ends by itself; publishing keeps retrying until the group's shutdown timeout cancels it.
            try await group.next()
            group.cancelAll()
        }
        #expect(agent.clock.elapsed == .zero)
        #expect(agent.hypervisor.readCount == 1)
        #expect(publisher.closed.withLock { $0 })
        #expect(agent.stats.snapshot.samplesPublished == 0 && agent.stats.snapshot.samplesProduced == 2)
        // The next start (a copy of the spool's directory, not locked by this one) finds the cycle's samples.
        let kept = try temporaryDirectory().appendingPathComponent("spool")
        defer { try? FileManager.default.removeItem(at: kept.deletingLastPathComponent()) }
        try FileManager.default.copyItem(at: agent.directory, to: kept)
        let samples = try await drainSpool(try openSpool(kept))
        #expect(ClockedAgent.metersByCycle(samples) == [["cpu", "vcpus"]])
    }

    @Test("publishing retries with backoff on the clock and delivers once the broker takes the batch")
    func publishRetry() async throws {
        let clock = SteppedClock()
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spool = try openSpool(directory)
        await spool.append(makeRecords(20, perRecord: 10))
        let publisher = ClockedPublisher(clock: clock, failures: 3)
        let stats = AgentStats()
        let publish = PublishService(spool: spool, publishers: [publisher], stats: stats,
                                     backoff: Backoff(initial: 0.5, maximum: 1, jitter: 1...1), clock: clock,
                                     logger: Logger(label: "test"))
        try await runServices([publish]) { trigger, _ in
            // Delays 0.5, 1 and 1 (capped): the fourth call, at 2.5 s, is taken.
            await clock.run { publisher.callCount == 3 }
            await clock.advance()
            spool.finish()
            trigger.triggerGracefulShutdown()
        }
        #expect(publisher.calls.withLock { $0 } == [s(0), s(0.5), s(1.5), s(2.5)])
        #expect(publisher.received.withLock { $0.map(\.messageID) } == makeSamples(20).map(\.messageID))
        #expect(stats.snapshot.publishFailures == 3 && stats.snapshot.samplesPublished == 20)
        #expect(spool.currentCounters.pendingRecords == 0)
    }
}

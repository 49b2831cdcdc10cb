import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import VirtMeterCore
import VirtMeterTestSupport
@testable import VirtMeterAgent

@Suite("schedules")
struct ScheduleTests {
    @Test("sources due at the same moment share a cycle; each keeps its own interval")
    func coalesce() {
        var schedule = Schedule(sources: [("fast", 1), ("slow", 2)], start: 100)
        var cycles: [[String]] = []
        for _ in 0..<5 {
            guard let (time, due) = schedule.next() else { break }
            cycles.append(due.sorted())
            #expect(schedule.advance(due, now: time + 0.01).isEmpty)
        }
        #expect(cycles == [["fast", "slow"], ["fast"], ["fast", "slow"], ["fast"], ["fast", "slow"]])
    }

    @Test("a cycle that overruns skips the missed ticks instead of piling them up")
    func overrun() {
        var schedule = Schedule(sources: [("s", 1)], start: 0)
        #expect(schedule.advance(["s"], now: 3.5) == ["s": 3])   // ticks 1, 2, 3 missed
        #expect(schedule.next()?.time == 4)
    }

    @Test("a reload keeps the rhythm of unchanged sources and starts new ones now")
    func reload() {
        var schedule = Schedule(sources: [("a", 10), ("b", 10)], start: 0)
        _ = schedule.advance(["a", "b"], now: 0.1)
        schedule.replace(with: [("a", 10), ("b", 5), ("c", 1)], now: 3)
        #expect(schedule.entries.map(\.next) == [10, 3, 3])
    }
}

/// A hypervisor that counts polls and notes when each read overlaps another.
final class CountingHypervisor: Hypervisor {
    let reads = Mutex<[(start: Double, end: Double)]>([])
    let inFlight = Mutex(0)
    let overlapped = Mutex(false)
    let readDuration: Double

    init(readDuration: Double = 0.01) { self.readDuration = readDuration }

    func poll() async throws -> [DomainSnapshot] {
        let start = SampleClock.monotonic()
        inFlight.withLock { if $0 > 0 { overlapped.withLock { $0 = true } }; $0 += 1 }
        try await Task.sleep(for: .milliseconds(Int64(readDuration * 1000)))
        inFlight.withLock { $0 -= 1 }
        reads.withLock { $0.append((start, SampleClock.monotonic())) }
        return [DomainSnapshot(uuid: "u1", name: "d1", vcpuCount: 1, cpuTime: UInt64(start * 1e9),
                               maxMemoryKiB: 1024, memoryKiB: 1024, monotonicTime: start)]
    }
}

/// A publisher that takes `delay` seconds per call and keeps what it got.
final class SlowPublisher: Publisher {
    let delay: Double
    let received = Mutex<[Sample]>([])
    init(delay: Double) { self.delay = delay }
    func publish(_ records: SampleRecords) async throws {
        try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
        let samples = try records.decodedSamples()
        received.withLock { $0 += samples }
    }
}

@Suite("the polling service")
struct PollServiceTests {
    /// Runs a poll service and a publish service in a ServiceGroup for `seconds`, then shuts it down gracefully.
    func runAgent(hypervisor: CountingHypervisor, publisher: SlowPublisher, interval: Double, seconds: Double)
        async throws -> AgentStats.Counters {
        let stats = AgentStats()
        let logger = Logger(label: "test")
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // No fsync: this is about scheduling, and other tests' fsyncs on the same disk would stall the cycles.
        let spool = try Spool(configuration: SpoolConfiguration(directory: directory.path, fsync: .never),
                              logger: logger)
        let polling = PollingConfiguration(sources: [
            PollingSource(name: "s", interval: interval, selector: try MeterSelector(["cpu", "vcpus"])),
        ], warnings: [])
        let poll = PollService(
            hypervisor: hypervisor, stamper: SampleStamper(host: "h", signer: SampleSigner(secret: "")),
            samplesPerRecord: 50, polling: polling, loadPolling: { polling }, spool: spool, stats: stats,
            summaryEveryCycles: 0, logger: logger)
        let publish = PublishService(spool: spool, publishers: [publisher], stats: stats, logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [
            .init(service: publish, successTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: poll, successTerminationBehavior: .gracefullyShutdownGroup),
        ], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        return stats.snapshot
    }

    @Test("a slow publisher neither delays nor overlaps the cycles, and gets every sample after shutdown")
    func slowPublisher() async throws {
        let hypervisor = CountingHypervisor()
        let publisher = SlowPublisher(delay: 0.7)   // far longer than the 0.2 s interval
        let counters = try await runAgent(hypervisor: hypervisor, publisher: publisher, interval: 0.2, seconds: 2)
        let reads = hypervisor.reads.withLock { $0 }
        #expect(!hypervisor.overlapped.withLock { $0 })
        #expect((8...12).contains(reads.count), "\(reads.count) cycles in 2 s at 0.2 s")
        for (earlier, later) in zip(reads, reads.dropFirst()) {
            #expect(later.start >= earlier.end)
            #expect(later.start - earlier.start < 0.35, "cycles kept their interval despite the slow publisher")
        }
        // Shutdown drained the queue: every sample produced reached the publisher.
        #expect(counters.samplesProduced == reads.count * 2)
        #expect(publisher.received.withLock { $0.count } == counters.samplesProduced)
        #expect(counters.samplesRefused == 0 && counters.publishFailures == 0)
    }

    @Test("a read longer than the interval makes the next cycle start late, never two at once")
    func slowRead() async throws {
        let hypervisor = CountingHypervisor(readDuration: 0.45)
        let counters = try await runAgent(hypervisor: hypervisor, publisher: SlowPublisher(delay: 0), interval: 0.2,
                                          seconds: 1.5)
        let reads = hypervisor.reads.withLock { $0 }
        #expect(!hypervisor.overlapped.withLock { $0 })
        #expect((2...4).contains(reads.count))
        #expect(counters.skippedTicks >= reads.count - 1)
    }
}

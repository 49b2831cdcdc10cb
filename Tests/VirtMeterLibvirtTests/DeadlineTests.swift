import CLibvirt
import Foundation
import Logging
import Synchronization
import Testing
import VirtMeterCore
import VirtMeterTestSupport
@testable import VirtMeterLibvirt

/// A gate a test closes to make a libvirt call hang (as a call to a stopped QEMU does) and opens to let it return.
final class CallGate: Sendable {
    private let blocked = Mutex<Set<String>>([])
    private let calls = Mutex<[String: Int]>([:])
    private let opened = DispatchSemaphore(value: 0)

    func close(_ key: String) { blocked.withLock { _ = $0.insert(key) } }

    /// Lets every held call return.
    func open() {
        let keys = blocked.withLock { let keys = $0; $0 = []; return keys }
        for _ in 0..<(keys.count * 8) { opened.signal() }
    }

    func calls(_ key: String) -> Int { calls.withLock { $0[key, default: 0] } }

    /// The hypervisor's `beforeCall`: counts the call and holds it while its key is blocked.
    func hook(_ key: String) {
        calls.withLock { $0[key, default: 0] += 1 }
        if blocked.withLock({ $0.contains(key) }) { _ = opened.wait(timeout: .now() + 30) }
    }
}

@Suite("deadlines on libvirt calls (test driver)", .serialized)
struct DeadlineTests {
    /// The deadline here; the bounds asserted stay far below the 30 s a held call waits, so a busy host passes.
    static let timeout = 0.3

    func hypervisor(_ gate: CallGate, _ store: CapturingLogHandler.Store) -> LibvirtHypervisor {
        LibvirtHypervisor(uri: testNodeURI, callTimeout: Self.timeout,
                          logger: Logger(label: "test") { _ in CapturingLogHandler(store: store) },
                          beforeCall: { gate.hook($0) })
    }

    @Test("a batch returns at its deadline with the finished items; the stuck one holds only its own thread")
    func batch() async throws {
        let gate = DispatchSemaphore(value: 0)
        // Timed on the thread that waits: the cooperative pool may be slow to resume the test on a busy host.
        let (outputs, abandoned, elapsed) = try await offThePool {
            let started = SampleClock.monotonic()
            let (outputs, abandoned) = DeadlineBatch.run([1, 2, 3, 4, 5, 6], workers: 2, seconds: 0.3) { item -> Int in
                if item == 2 { _ = gate.wait(timeout: .now() + 10) }
                return item * 10
            }
            return (outputs, abandoned, SampleClock.monotonic() - started)
        }
        #expect(elapsed >= 0.3 && elapsed < 1.5, "returned after \(elapsed) s")
        #expect(outputs == [10, nil, 30, 40, 50, 60])
        #expect(abandoned == [2])
        gate.signal()
    }

    @Test("a domain whose call hangs is left out, named once, not called again while stuck, and named once back")
    func stuckDomain() async throws {
        let gate = CallGate(), store = CapturingLogHandler.Store()
        let hypervisor = hypervisor(gate, store)
        let all = try await hypervisor.poll()
        #expect(all.count == 4)
        let stuck = try #require(all.first { $0.name == "plain-vm" })
        gate.close(stuck.uuid)
        // The test driver returns state only in bulk: each poll reads every domain's groups with per-domain calls.
        for round in 1...3 {
            let started = SampleClock.monotonic()
            let snapshots = try await hypervisor.poll()
            let elapsed = SampleClock.monotonic() - started
            #expect(elapsed < Self.timeout + 4, "round \(round) took \(elapsed) s")
            #expect(snapshots.map(\.name).sorted() == ["instance-0000002a", "instance-0000002b", "instance-0000002c"])
            #expect(hypervisor.lastCounters.notAnswering == 1)
        }
        #expect(gate.calls(stuck.uuid) == 2, "one call per poll until it hung, none while it is stuck")
        #expect(store.count("domain not answering: its samples are left out until it does") == 1)
        gate.open()
        try await Task.sleep(for: .milliseconds(100))
        let back = try await hypervisor.poll()
        #expect(back.count == 4 && hypervisor.lastCounters.notAnswering == 0)
        let lines = store.metadata("domain answering again")
        #expect(lines.count == 1 && lines.first?["virtmeter.domain.name"] == "plain-vm")
        let silent = try #require(lines.first?["virtmeter.domain.silent_seconds"].flatMap { Double("\($0)") })
        #expect(silent >= Self.timeout && silent < 10)
    }

    @Test("a bulk call that hangs: the domains are read one by one, the bulk call is not made again until it returns")
    func stuckBulkCall() async throws {
        let gate = CallGate(), store = CapturingLogHandler.Store()
        let hypervisor = hypervisor(gate, store)
        gate.close("bulk")
        for _ in 1...2 {
            let started = SampleClock.monotonic()
            let snapshots = try await hypervisor.poll()
            #expect(SampleClock.monotonic() - started < Self.timeout + 4)
            #expect(snapshots.count == 4 && snapshots.allSatisfy { $0.cpuTime != nil && $0.maxMemoryKiB > 0 })
            #expect(!hypervisor.lastCounters.readInBulk && hypervisor.lastCounters.notAnswering == 0)
            // The workers read on connections of their own (one each at most: a worker may take every domain before
            // the others start); the listing not on the bulk call's connection.
            #expect((1...3).contains(hypervisor.lastCounters.ownConnections))
        }
        #expect(gate.calls("bulk") == 1 && gate.calls("list") == 2)
        #expect(gate.calls("open") == 2, "the first connection, and one when the bulk call missed its deadline")
        gate.open()
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await hypervisor.poll().count == 4)
        #expect(hypervisor.lastCounters.readInBulk && hypervisor.lastCounters.ownConnections == 0)
        #expect(gate.calls("bulk") == 2)
        #expect(store.count("bulk stats call missed its deadline: reading domains one by one until it returns") == 1)
    }

    @Test("a shut-off listing that hangs leaves the shut-off domains out, not the running ones, and is not made again")
    func stuckShutOffListing() async throws {
        let gate = CallGate(), store = CapturingLogHandler.Store()
        let hypervisor = hypervisor(gate, store)
        gate.close("list-shut-off")
        for _ in 1...2 {
            let started = SampleClock.monotonic()
            let snapshots = try await hypervisor.poll()
            #expect(SampleClock.monotonic() - started < Self.timeout + 4)
            #expect(snapshots.count == 4 && snapshots.allSatisfy { $0.state != .shutoff && $0.cpuTime != nil })
        }
        #expect(gate.calls("list-shut-off") == 1, "not called again while the first is stuck")
        gate.open()
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await hypervisor.poll().count == 4)
        #expect(gate.calls("list-shut-off") == 2)
    }

    @Test("an open that misses its deadline fails the poll; the connection it opens late is used by the next one")
    func lateOpen() async throws {
        let gate = CallGate(), store = CapturingLogHandler.Store()
        let hypervisor = hypervisor(gate, store)
        gate.close("open")
        do {
            _ = try await hypervisor.poll()
            Issue.record("the poll succeeded while the open hung")
        } catch let error as LibvirtError {
            #expect(error.description.contains("no answer within"))
        }
        gate.open()
        try await Task.sleep(for: .milliseconds(200))
        #expect(try await hypervisor.poll().count == 4)
        #expect(gate.calls("open") == 1, "the late connection was used, not a second open")
    }

    @Test("without connectNow, an unreachable libvirt does not fail the init; each poll tries again")
    func lazyConnection() async throws {
        let hypervisor = try LibvirtHypervisor(uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock",
                                               connectNow: false)
        for _ in 1...2 {
            await #expect(throws: LibvirtError.self) { try await hypervisor.poll() }
        }
    }

    @Test("a lifecycle event makes the domain's XML be read again at the next poll")
    func lifecycleEvent() async throws {
        let control = try #require(virConnectOpen("test:///default"))
        defer { virConnectClose(control) }
        let hypervisor = try LibvirtHypervisor(uri: "test:///default")
        _ = try await hypervisor.poll()
        _ = try await hypervisor.poll()
        let steady = hypervisor.lastCounters.perDomainCalls
        let domain = try #require(virDomainLookupByName(control, "test"))
        defer { virDomainFree(domain) }
        #expect(virDomainSuspend(domain) == 0)
        #expect(virDomainResume(domain) == 0)
        let deadline = SampleClock.monotonic() + 5
        while hypervisor.domainEventsReceived < 2, SampleClock.monotonic() < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(hypervisor.domainEventsReceived >= 2, "suspended and resumed events")
        _ = try await hypervisor.poll()
        #expect(hypervisor.lastCounters.perDomainCalls == steady + 1, "the XML read again, once")
        _ = try await hypervisor.poll()
        #expect(hypervisor.lastCounters.perDomainCalls == steady)
    }
}

import Foundation
import Logging
import Testing
import VirtMeterCore
import VirtMeterLibvirt
import VirtMeterTestSupport

/// `virtmeter run` polling `meters` every `interval` seconds and printing its samples, its output in files in a
/// directory of its own (deleted when it is let go of).
func agentProcess(_ name: String, uri: String, interval: Double, meters: [String]) throws -> LoggedProcess {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-\(name)-\(getpid())")
    try? FileManager.default.removeItem(at: directory)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let polling = directory.appendingPathComponent("polling.yaml")
    try "sources:\n  - name: s\n    interval: \(interval)\n    meters: [\(meters.joined(separator: ", "))]\n"
        .write(to: polling, atomically: true, encoding: .utf8)
    return try LoggedProcess(virtmeterBinary, [
        "run", "--connect", uri, "--polling", polling.path, "--publish", "stdout",
        "--state-dir", directory.appendingPathComponent("state").path, "--log-level", "debug",
    ], directory: directory, removesDirectory: true)
}

/// Seconds since the epoch of a sample's `timestamp` (`2026-11-27T06:59:01.123456`).
func epochSeconds(_ timestamp: String) -> Double? {
    let parts = timestamp.split(whereSeparator: { "-T:.".contains($0) }).map { Int($0) }
    guard parts.count == 7, let year = parts[0], let month = parts[1], let day = parts[2], let hour = parts[3],
          let minute = parts[4], let second = parts[5], let micros = parts[6]
    else { return nil }
    var fields = tm()
    fields.tm_year = Int32(year - 1900)
    fields.tm_mon = Int32(month - 1)
    fields.tm_mday = Int32(day)
    fields.tm_hour = Int32(hour)
    fields.tm_min = Int32(minute)
    fields.tm_sec = Int32(second)
    return Double(timegm(&fields)) + Double(micros) / 1e6
}

func wallClock() -> Double { Date().timeIntervalSince1970 }

/// Runs a shell command line on a thread of its own (output to a file, never a pipe: a daemon it starts may keep
/// what it inherits) and returns its exit status.
func shell(_ command: String) async -> Int32 {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: system(command)) }.start()
    }
}

/// Issue 15: a hung guest, libvirtd down at start, guests coming, going and rebooting.
@Suite("Never stall: hung guests, libvirtd down at start, churn", .serialized)
struct StallTests {
    static let interval = 2.0

    func running(_ kit: GuestKit) async throws -> [(name: String, uuid: String, spec: String)] {
        var result: [(String, String, String)] = []
        for guest in kit.guests() {
            guard let state = try? await kit.virsh(["domstate", guest.name]), state.hasPrefix("running")
            else { continue }
            let uuid = try await kit.virsh(["domuuid", guest.name]).trimmingCharacters(in: .whitespacesAndNewlines)
            result.append((guest.name, uuid, guest.spec))
        }
        return result
    }

    /// The pid of a kit guest's qemu.
    func qemuPID(_ name: String) throws -> pid_t {
        let text = try String(contentsOfFile: "/run/libvirt/qemu/\(name).pid", encoding: .utf8)
        return try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), "pid of \(name): \(text)")
    }

    /// Expects each of `healthy` read in every cycle of `agent` (the poll side's own word: no line naming it as not
    /// answering or skipped, not even once), and its cpu samples from two cycles before `from` to two after `to` at
    /// least one per interval and never more than `interval + late` s apart (`late`: how late a cycle's samples may
    /// come, the deadlines a cycle waited out, as each poll's samples are stamped when it ends). Returns the longest
    /// gap.
    func expectEveryCycle(_ agent: LoggedProcess, _ healthy: [(name: String, uuid: String, spec: String)],
                          from: Double, to: Double, late: Double, while what: String) -> Double {
        let samples = agent.samples()
        var longest = 0.0
        for guest in healthy {
            let times = samples
                .filter { $0["resource_id"] == .string(guest.uuid) && $0["counter_name"] == .string("cpu") }
                .compactMap { $0["timestamp"]?.stringValue.flatMap(epochSeconds) }
                .filter { $0 > from - 2 * Self.interval && $0 < to + 2 * Self.interval }.sorted()
            #expect(times.count >= Int((to - from) / Self.interval), "\(guest.name): \(times.count) cycles \(what)")
            let gap = zip(times, times.dropFirst()).map { $1 - $0 }.max() ?? .infinity
            #expect(gap <= Self.interval + late, "\(guest.name): a gap of \(gap) s \(what)")
            longest = max(longest, gap)
            for words in ["did not answer this cycle", "domain not answering", "domain skipped this cycle"] {
                #expect(agent.log(words, "virtmeter.domain.name=\(guest.name) ").isEmpty, "\(guest.name): \(words)")
            }
        }
        return longest
    }

    /// The deadline of each libvirt call in these tests' agents.
    static let deadline = LibvirtHypervisor.callTimeout(interval: interval)

    @Test("a guest's qemu stopped for 40 s: the others get a sample every cycle, it is named once each way")
    func hungGuest() async throws {
        let kit = try GuestKit.fromEnvironment()
        let guests = try await running(kit)
        let stopped = try #require(guests.first { $0.spec == "burn=50" }, "no running burn=50 guest in the kit")
        let healthy = guests.filter { $0.name != stopped.name }
        try #require(healthy.count >= 2, "needs two more running guests, have \(guests.map(\.name))")
        let pid = try qemuPID(stopped.name)

        let agent = try agentProcess("hung", uri: kit.uri, interval: Self.interval, meters: ["cpu", "cpu_util"])
        try await Task.sleep(for: .seconds(7))
        #expect(agent.samples().count > 0, "samples before the stop: \(agent.stderr)")
        let stoppedAt = wallClock()
        #expect(kill(pid, SIGSTOP) == 0)
        var named: Double?
        while wallClock() - stoppedAt < 40 {
            if named == nil, !agent.log("domain not answering", "virtmeter.domain.name=\(stopped.name)").isEmpty {
                named = wallClock() - stoppedAt
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(kill(pid, SIGCONT) == 0)
        let continuedAt = wallClock()
        var back: Double?
        while back == nil, wallClock() - continuedAt < 20 {
            if !agent.log("domain answering again", "virtmeter.domain.name=\(stopped.name)").isEmpty {
                back = wallClock() - continuedAt
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .seconds(4 * Self.interval))
        let status = agent.stop()
        #expect(status == 0)
        // What the inspector said, for the record (not answering, back, bulk call stuck and returned).
        for line in agent.log("virtmeter.libvirt") { print("AGENT \(line)") }

        // Every cycle has a sample of each healthy guest: the longest gap between their cpu samples' timestamps.
        // A cycle whose bulk call misses its deadline ends that much late.
        let longest = expectEveryCycle(agent, healthy, from: stoppedAt, to: continuedAt, late: Self.deadline + 0.2,
                                       while: "while \(stopped.name) was stopped")
        let samples = agent.samples()
        #expect(agent.log("domain not answering", "virtmeter.domain.name=\(stopped.name)").count == 1)
        #expect(agent.log("domain answering again", "virtmeter.domain.name=\(stopped.name)").count == 1)
        #expect(agent.log("domain not answering").count == 1, "no healthy guest named: \(agent.stderr)")
        let namedAfter = try #require(named, "the stopped guest was never named")
        let backAfter = try #require(back, "the guest was never named as back")
        #expect(namedAfter <= 2 * Self.interval + 1, "named \(namedAfter) s after the stop")
        #expect(backAfter <= 2 * Self.interval + 1, "named back \(backAfter) s after it continued")
        // Its cpu_util after the pause: a burn=50 guest, over the real elapsed time: in range, no spike.
        let utils = samples.filter {
            $0["resource_id"] == .string(stopped.uuid) && $0["counter_name"] == .string("cpu_util")
                && ($0["timestamp"]?.stringValue.flatMap(epochSeconds) ?? 0) > continuedAt
        }.compactMap { $0["counter_volume"]?.doubleValue }
        #expect(!utils.isEmpty, "cpu_util of \(stopped.name) after the pause")
        #expect(utils.allSatisfy { $0 >= 0 && $0 <= 100 })
        #expect(utils.prefix(2).allSatisfy { $0 < 90 }, "cpu_util after the pause: \(utils)")
        figure("longest gap of the healthy guests' samples while one guest was stopped 40 s",
               expected: "<= \(format(Self.interval + Self.deadline + 0.2)) s (before: 40 s)",
               measured: "\(format(longest)) s")
        figure("stopped guest named / named back", expected: "within two cycles",
               measured: "\(format(namedAfter, 1)) s / \(format(backAfter, 1)) s")
        figure("cpu_util of the burn=50 guest after the pause", expected: "in [0, 100], no spike",
               measured: utils.prefix(4).map { format($0, 1) }.joined(separator: ", "))
    }

    /// While the bulk call hangs on one stopped guest, the other's read of its own (its job is free) hangs too: a
    /// call hung on a connection holds the others on it up for seconds, so each worker reads on its own connection.
    @Test("two guests' qemu stopped 20 s, hanging the bulk call and a read of its own: the others sampled every cycle")
    func twoHungGuests() async throws {
        let kit = try GuestKit.fromEnvironment()
        let guests = try await running(kit)
        let stopped = try ["burn=50", "idle,stats=0"].map { spec in
            try #require(guests.first { $0.spec == spec }, "no running \(spec) guest in the kit")
        }
        let healthy = guests.filter { guest in !stopped.contains { $0.name == guest.name } }
        try #require(healthy.count >= 2, "needs two more running guests, have \(guests.map(\.name))")
        let pids = try stopped.map { try qemuPID($0.name) }

        let agent = try agentProcess("hung2", uri: kit.uri, interval: Self.interval, meters: ["cpu"])
        try await Task.sleep(for: .seconds(7))
        let stoppedAt = wallClock()
        for pid in pids { #expect(kill(pid, SIGSTOP) == 0) }
        try await Task.sleep(for: .seconds(20))
        for pid in pids { #expect(kill(pid, SIGCONT) == 0) }
        let continuedAt = wallClock()
        try await Task.sleep(for: .seconds(4 * Self.interval))
        #expect(agent.stop() == 0)
        for line in agent.log("virtmeter.libvirt") { print("AGENT \(line)") }

        // The cycle whose bulk call misses its deadline also waits out the deadline of the other guest's read.
        let longest = expectEveryCycle(agent, healthy, from: stoppedAt, to: continuedAt, late: 2 * Self.deadline + 0.4,
                                       while: "while \(stopped.map(\.name)) were stopped")
        #expect(agent.log("bulk stats call missed its deadline").count == 1)
        // The scenario: one stopped guest's own read hung (its job was free, its qemu not answering).
        #expect(!agent.log("domain did not answer this cycle", "no answer within").isEmpty, "\(agent.stderr)")
        for guest in stopped {
            #expect(agent.log("domain not answering", "virtmeter.domain.name=\(guest.name)").count == 1)
            #expect(agent.log("domain answering again", "virtmeter.domain.name=\(guest.name)").count == 1)
        }
        #expect(agent.log("domain not answering").count == 2, "no healthy guest named: \(agent.stderr)")
        figure("longest gap of the healthy guests' samples while two guests were stopped 20 s",
               expected: "<= \(format(Self.interval + 2 * Self.deadline + 0.4)) s (two deadlines late)",
               measured: "\(format(longest)) s")
    }

    @Test("SIGTERM while a guest's qemu is stopped: exit 0 within shutdown_timeout, with the stopped line")
    func shutdownWhileHung() async throws {
        let kit = try GuestKit.fromEnvironment()
        let guests = try await running(kit)
        let stopped = try #require(guests.first { $0.spec == "burn=50" }, "no running burn=50 guest in the kit")
        let pid = try qemuPID(stopped.name)
        let agent = try agentProcess("hungstop", uri: kit.uri, interval: Self.interval, meters: ["cpu", "memory.usage"])
        try await Task.sleep(for: .seconds(3 * Self.interval))
        #expect(kill(pid, SIGSTOP) == 0)
        defer { kill(pid, SIGCONT) }
        try await Task.sleep(for: .seconds(3 * Self.interval))
        let stopping = SampleClock.monotonic()
        let status = agent.stop()
        let took = SampleClock.monotonic() - stopping
        // shutdown_timeout is 10 s by default; the backstop ends the process half a second after it at the latest.
        #expect(status == 0 && took <= 11, "exit \(status) after \(took) s: \(agent.stderr.suffix(1500))")
        #expect(agent.log("virtmeter stopped").count == 1 && !agent.stderr.contains("Fatal error"))
        figure("SIGTERM while a guest's qemu is stopped", expected: "exit 0 within shutdown_timeout (10 s)",
               measured: "exit \(status) after \(format(took)) s")
    }

    @Test("a guest destroyed and another started between two cycles; a guest rebooted: no cpu_util spike")
    func churnAndReboot() async throws {
        let kit = try GuestKit.fromEnvironment()
        let guests = try await running(kit)
        let gone = try #require(guests.first { $0.spec == "idle" }, "no running idle guest")
        let rebooted = try #require(guests.first { $0.spec == "idle,balloon=none" }, "no idle,balloon=none guest")
        let libvirt = try LibvirtHypervisor(uri: kit.uri, callTimeout: LibvirtHypervisor.callTimeout(interval: 2))
        var poller = Poller(hypervisor: libvirt, meters: [CPUMeter(), CPUUtilMeter()],
                            stamper: SampleStamper(host: "stall-tests", signer: SampleSigner(secret: "")),
                            logger: Logger(label: "stall-tests"))
        /// One cycle's samples, read back from the records the poller made.
        func cycle() async throws -> [Sample] {
            var samples: [Sample] = []
            _ = try await poller.cycle { records in samples += try records.decodedSamples() }
            return samples
        }
        func names(_ samples: [Sample]) -> Set<String> {
            Set(samples.compactMap { $0.resourceMetadata["name"]?.stringValue })
        }
        func util(_ samples: [Sample], _ uuid: String) -> Double? {
            samples.first { $0.resourceID == uuid && $0.name == "cpu_util" }?.volume.doubleValue
        }
        _ = try await cycle()
        let before = try await cycle()
        let eventsBefore = libvirt.domainEventsReceived
        #expect(names(before).contains(gone.name))

        // Churn between two cycles.
        _ = try await kit.kit(["destroy", gone.name])
        _ = try await kit.kit(["start", "vmtest-new", "idle", "--no-wait"])
        let after = try await cycle()
        #expect(!names(after).contains(gone.name), "the destroyed guest is gone from the next cycle")
        #expect(names(after).contains("vmtest-new"), "the started guest is in the next cycle")
        #expect(libvirt.domainEventsReceived >= eventsBefore + 2, "stopped and started events")

        // Hard reboot (a new qemu, the same domain): the counter restarts, cpu_util skips a cycle, no spike.
        _ = try await kit.virsh(["destroy", rebooted.name])
        _ = try await kit.virsh(["start", rebooted.name])
        var utils: [Double?] = []
        for _ in 0..<3 {
            try await Task.sleep(for: .seconds(Self.interval))
            utils.append(util(try await cycle(), rebooted.uuid))
        }
        #expect(utils[0] == nil, "no cpu_util across the restart (the counter went back): \(utils)")
        #expect(utils.dropFirst().allSatisfy { $0 != nil && $0! >= 0 && $0! <= 100 }, "\(utils)")

        figure("hard reboot: cpu_util across the restart", expected: "none, then in [0, 100]",
               measured: utils.map { $0.map { format($0, 1) } ?? "none" }.joined(separator: ", "))

        // A lifecycle event without a restart (suspended, resumed: same qemu, same domain ID) makes its XML be read
        // again at the next cycle. (No in-place reset here: kit guests have on_reboot=destroy, a reset stops them.)
        _ = try await cycle()
        #expect(!libvirt.lastCounters.readInBulk || libvirt.lastCounters.perDomainCalls == 0,
                "steady cycles in bulk make no per-domain call")
        let eventsBeforePause = libvirt.domainEventsReceived
        _ = try await kit.virsh(["suspend", rebooted.name])
        _ = try await kit.virsh(["resume", rebooted.name])
        let deadline = SampleClock.monotonic() + 5
        while libvirt.domainEventsReceived < eventsBeforePause + 2, SampleClock.monotonic() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(libvirt.domainEventsReceived >= eventsBeforePause + 2, "suspended and resumed events")
        let resumed = try await cycle()
        // In bulk, the only per-domain call is that guest's XML, read again because of the events (a loaded host
        // may make the bulk call miss its deadline: the domains are then read one by one).
        let counters = libvirt.lastCounters
        #expect(!counters.readInBulk || counters.perDomainCalls == 1, "\(counters)")
        let value = util(resumed, rebooted.uuid)
        #expect(value.map { $0 >= 0 && $0 <= 100 } ?? true, "cpu_util after the pause: \(String(describing: value))")

        // Leave the kit as it was.
        _ = try? await kit.kit(["destroy", "vmtest-new"])
        _ = try? await kit.kit(["start", gone.name, "idle", "--no-wait"])
    }

    /// Last: it takes libvirtd away.
    @Test("libvirtd down when the agent starts, back 20 s later: one line each way, samples within an interval")
    func libvirtdDownAtStart() async throws {
        let kit = try GuestKit.fromEnvironment()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-kit-\(getpid()).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        #expect(await shell("'\(kit.script)' stop-libvirtd >'\(log)' 2>&1 </dev/null") == 0)
        let agent = try agentProcess("nolibvirtd", uri: kit.uri, interval: Self.interval, meters: ["vcpus"])
        try await Task.sleep(for: .seconds(20))
        #expect(agent.process.isRunning, "the agent waits for libvirtd: \(agent.stderr)")
        #expect(agent.samples().count == 0)
        #expect(agent.log("libvirt unreachable").count == 1)

        async let started = shell("'\(kit.script)' start-libvirtd >'\(log)' 2>&1 </dev/null")
        let began = SampleClock.monotonic()
        var answered: Double?, firstSample: Double?
        while answered == nil || firstSample == nil, SampleClock.monotonic() - began < 120 {
            if answered == nil, (try? LibvirtHypervisor(uri: kit.uri, callTimeout: 5)) != nil {
                answered = SampleClock.monotonic()
            }
            if firstSample == nil, agent.samples().count > 0 { firstSample = SampleClock.monotonic() }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(await started == 0, "kit start-libvirtd: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        try await Task.sleep(for: .seconds(2 * Self.interval))
        #expect(agent.stop() == 0)
        let answeredAt = try #require(answered, "libvirtd never answered")
        let sampledAt = try #require(firstSample, "no sample after libvirtd came back: \(agent.stderr)")
        #expect(sampledAt - answeredAt <= Self.interval + 0.5, "first sample \(sampledAt - answeredAt) s after")
        #expect(agent.log("libvirt unreachable").count == 1)
        #expect(agent.log("libvirt is back").count == 1)
        figure("libvirtd answering to the first sample (agent started while it was down)",
               expected: "within one interval (\(Self.interval) s)", measured: "\(format(sampledAt - answeredAt)) s")
    }
}

import Foundation
import Logging
import Testing
import VirtMeterAgent
import VirtMeterCore
import VirtMeterLibvirt
import VirtMeterTestSupport

/// The declared meters the guest scenario polls: the README's examples (etc/virtmeter/meters.d/examples.yaml with
/// its examples uncommented) and the per-vCPU sum of the run-queue delay as a percentage.
enum DeclaredGuestMeters {
    static let summedDelay = """
          - name: cpu.delay.summed
            type: gauge
            unit: "%"
            summary: run-queue delay of all vCPUs, summed, percent
            field: vcpu.N.delay
            aggregate: sum
            scale: 1e-7
            rate: true

        """

    static func load() throws -> [DeclaredMeter] {
        let file = repositoryRoot.appendingPathComponent("etc/virtmeter/meters.d/examples.yaml")
        // The examples are the lines after `meters:`, each behind a '#'.
        let lines = try String(contentsOf: file, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(of: "meters:") else { throw KitError("no 'meters:' line in \(file.path)") }
        let examples = (lines[...start] + lines[(start + 1)...].map { $0.dropFirst() }).joined(separator: "\n")
        return try DeclaredMeters.parse(examples + "\n" + summedDelay, file: file.path).meters
    }
}

extension GuestTests {
    @Test("declared memory.major_faults (balloon.major_fault) equals virsh dommemstat's major_fault")
    func declaredMajorFaults() async throws {
        let run = try await Scenario.shared.record()
        var compared: [(String, Double, UInt64)] = []
        var skipped = 0
        for cycle in run.cycles {
            for (name, memstat) in cycle.dommemstat {
                // A guest still booting has sent no balloon report yet: neither has a major_fault.
                guard let virsh = memstat["major_fault"] else {
                    #expect(cycle.value(name, "memory.major_faults") == nil)
                    continue
                }
                // Equal when both read the same report of the guest's balloon driver (same last_update).
                guard memstat["last_update"] == cycle.snapshots[name]?.balloon.lastUpdate else {
                    skipped += 1
                    continue
                }
                let declared = cycle.value(name, "memory.major_faults")
                #expect(declared != nil, "no memory.major_faults for \(name) in cycle \(cycle.index)")
                guard let declared else { continue }
                compared.append((name, declared, virsh))
            }
        }
        let equal = compared.filter { $0.1 == Double($0.2) }
        figure("declared memory.major_faults vs `virsh dommemstat NAME` major_fault", expected: "equal",
               measured: "\(equal.count) equal of \(compared.count) readings of the same balloon report ("
                   + "\(skipped) pairs straddled a new report); e.g. "
                   + compared.suffix(2).map { "\($0.0) \(Int($0.1)) vs \($0.2)" }.joined(separator: ", "))
        #expect(compared.count >= 3, "too few readings of the same balloon report")
        // No balloon device, or one that reported once at boot: no sample, as memory.usage.
        for spec in ["idle,balloon=none", "idle,stats=0"] {
            let name = try run.guest(spec).name
            #expect(run.cycles.allSatisfy { $0.value(name, "memory.major_faults") == nil }, "\(spec)")
        }
        #expect(equal.count == compared.count, "\(compared.filter { $0.1 != Double($0.2) })")
    }

    @Test("declared disk.device.flushes: one sample per disk with the built-in disk ids; the io guest moves it")
    func declaredFlushRequests() async throws {
        let run = try await Scenario.shared.record()
        let io = run.ioGuest
        let cycles = run.cycles.filter { $0.snapshots[io] != nil }
        var values: [Double] = []
        for cycle in cycles {
            let snapshot = try #require(cycle.snapshots[io])
            let mine = cycle.samples.filter { $0.resourceID.hasPrefix(snapshot.uuid) }
            let flush = mine.filter { $0.name == "disk.device.flushes" }
            let written = mine.filter { $0.name == "disk.device.write.bytes" }
            #expect(flush.count == snapshot.disks.count, "cycle \(cycle.index): \(flush.count) flush samples")
            #expect(Set(flush.map(\.resourceID)) == Set(written.map(\.resourceID)))
            #expect(Set(flush.map(\.resourceID)) == Set(snapshot.disks.map { "\(snapshot.uuid)-\($0.name)" }))
            values.append(flush.first?.volume.doubleValue ?? -1)
        }
        let first = try #require(values.first), last = try #require(values.last)
        let lastCycle = try #require(cycles.last)
        let virsh = lastCycle.virshBlock[io]?["block.0.fl.reqs"].flatMap(Double.init)
        figure("declared disk.device.flushes of the io guest (vda) vs `virsh domstats --block` block.0.fl.reqs",
               expected: "grows; equal or virsh slightly ahead (read just after)",
               measured: "\(Int(first)) -> \(Int(last)) over \(cycles.count) cycles; last \(Int(last)) vs virsh "
                   + "\(virsh.map { String(Int($0)) } ?? "?")")
        #expect(last > first, "the io guest's flushes did not move the declared meter")
        let after = try #require(virsh, "no virsh domstats --block of the io guest")
        #expect(after >= last && after - last <= 20)
    }

    @Test("declared summed vCPU delay rate stays within [0, 100] and rises when two burners share one host CPU")
    func declaredDelayRate() async throws {
        let run = try await Scenario.shared.record()
        let all = run.cycles.flatMap { cycle in
            cycle.values.values.compactMap { $0["cpu.delay.summed"] }
                + cycle.values.values.compactMap { $0["cpu.steal"] }
        }
        #expect(!all.isEmpty && all.allSatisfy { (0...100).contains($0) },
                "out of [0, 100]: \(all.filter { $0 > 100 })")

        // Two burners (1 vCPU each): first as the host schedules them, then both pinned to host CPU 0. Meanwhile the
        // guests' cgroup (libvirt's `machine`, of the kit's libvirtd) gets the largest CPU weight, so that other work
        // on a shared host (a compiler) does not decide the delay; it is put back afterwards.
        let kit = run.kit
        let burner = try run.guest("burn=100").name, other = try run.guest("burn=50").name
        // The scenario ends by starting its idle guest again: a TCG guest booting takes a host CPU for a minute.
        let booting = SampleClock.monotonic()
        while !kit.serialLog(run.destroyed).contains("VMTEST ready") {
            guard SampleClock.monotonic() - booting < 240 else { throw KitError("\(run.destroyed) did not boot again") }
            try await Task.sleep(for: .seconds(1))
        }
        let weight = try #require(kit.machineCPUWeight(), "no cpu.shares or cpu.weight for libvirt's machine cgroup")
        let declared = try DeclaredGuestMeters.load().filter { $0.name == "cpu.delay.summed" }
        let libvirt = try LibvirtHypervisor(uri: kit.uri)
        libvirt.request(StatsFieldRequest(meters: declared))
        var poller = Poller(hypervisor: libvirt, meters: declared,
                            stamper: SampleStamper(host: "guest-tests", signer: SampleSigner(secret: "")),
                            logger: Logger(label: "virtmeter.poll.test"))
        let uuids = try await libvirt.poll().reduce(into: [String: String]()) { $0[$1.uuid] = $1.name }
        func phase(_ cycles: Int) async throws -> (declared: [Double], virsh: Double) {
            let start = try await kit.domstats(burner, ["--vcpu"])["vcpu.0.delay"].flatMap(Double.init)
            let began = SampleClock.monotonic()
            var values: [Double] = []
            for index in 0...cycles {
                var written: [SampleRecords] = []
                _ = try await poller.cycle { written.append($0) }
                if index > 0 {
                    values += try written.flatMap { try $0.decodedSamples() }
                        .filter { uuids[$0.resourceID] == burner }.map(\.volume.doubleValue)
                }
                try await Task.sleep(for: .seconds(2))
            }
            let end = try await kit.domstats(burner, ["--vcpu"])["vcpu.0.delay"].flatMap(Double.init)
            let virsh = ((end ?? 0) - (start ?? 0)) / ((SampleClock.monotonic() - began) * 1e9) * 100
            return (values, virsh)
        }
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        func restore() async {
            for name in [burner, other] { _ = try? await kit.virsh(["vcpupin", name, "0", "0-\(cpus - 1)", "--live"]) }
            try? weight.value.write(toFile: weight.file, atomically: false, encoding: .utf8)
        }
        let free: (declared: [Double], virsh: Double), pinned: (declared: [Double], virsh: Double)
        do {
            try weight.highest.write(toFile: weight.file, atomically: false, encoding: .utf8)
            free = try await phase(5)
            for name in [burner, other] { _ = try await kit.virsh(["vcpupin", name, "0", "0", "--live"]) }
            pinned = try await phase(5)
        } catch {
            await restore()
            throw error
        }
        await restore()
        let before = try #require(median(free.declared)), during = try #require(median(pinned.declared))
        figure("declared cpu.delay.summed of the burn=100 guest, free vs pinned with burn=50 on one host CPU",
               expected: "within [0, 100], rises when pinned",
               measured: "\(format(before, 1))% -> \(format(during, 1))% (virsh domstats --vcpu vcpu.0.delay over "
                   + "each phase: \(format(free.virsh, 1))% -> \(format(pinned.virsh, 1))%)",
               spread: "free " + spread(free.declared, 1) + "; pinned " + spread(pinned.declared, 1))
        #expect((free.declared + pinned.declared).allSatisfy { (0...100).contains($0) })
        #expect(free.declared.count == 5 && pinned.declared.count == 5)
        #expect(during >= before + 10, "pinning two burners to one host CPU did not raise the delay rate")
    }
}

/// A meter with at most one reading per domain, of the domain itself.
package protocol DomainValueMeter: Meter {
    /// The domain's value, or nil when the snapshot does not have it.
    func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume?
}

extension DomainValueMeter {
    package var devices: DeviceGroups { [] }

    /// The domain's value as one reading; none for a shut-off domain read for its metadata only.
    package func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void) {
        guard !now.metadataOnly, let value = value(now, previous: previous) else { return }
        body(Reading(value))
    }
}

/// KiB as MiB, a float as ceilometer's `value / units.Ki` gives it.
func mebibytes(_ kib: UInt64) -> Volume { .double(Double(kib) / 1024) }

/// The domain-level meters, in `virtmeter meters` order.
package enum InstanceMeters {
    package static let all: [any Meter] = [
        CPUMeter(), CPUUtilMeter(), VCPUsMeter(), MemoryMeter(), MemoryUsageMeter(), MemoryResidentMeter(),
        MemoryAvailableMeter(), MemorySwapInMeter(), MemorySwapOutMeter(), PowerStateMeter(),
        FlavorDiskMeter.root, FlavorDiskMeter.ephemeral,
    ] + PerfMeter.all + [CPUDelayMeter(), CPUDelayUtilMeter()]
}

/// `cpu`: cumulative guest CPU time in ns, with the vCPU count as `cpu_number`.
package struct CPUMeter: Meter {
    package let name = "cpu", type = SampleType.cumulative, unit = "ns"
    package let devices: DeviceGroups = []
    package let summary = "CPU time used by the guest (sum of vCPU time and wait, else the domain's cpu.time)"
    package init() {}
    package func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void) {
        guard !now.metadataOnly, let time = now.totalCPUTime else { return }
        body(Reading(.counter(time), metadata: [("cpu_number", .int(Int64(now.vcpuCount)))]))
    }
}

/// `cpu_util`: Δcpu / (Δt · 10⁹ · vCPUs) · 100 between two polls, clamped to [0, 100].
package struct CPUUtilMeter: DomainValueMeter {
    package let name = "cpu_util", type = SampleType.gauge, unit = "%"
    package let summary = "average CPU utilisation per vCPU since the previous poll (none on the first poll)"
    package let isCeilometerMeter = false
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        utilisation(now.totalCPUTime, previous?.totalCPUTime, now, previous)
    }
}

/// A cumulative ns counter's change between two polls, per vCPU and second, as a percentage clamped to [0, 100]:
/// nil on the first poll, when the counter went backwards (reboot) or no time passed.
func utilisation(_ current: UInt64?, _ before: UInt64?, _ now: DomainSnapshot, _ previous: DomainSnapshot?) -> Volume? {
    guard let previous, let current, let before, current >= before, now.vcpuCount > 0 else { return nil }
    let elapsed = now.monotonicTime - previous.monotonicTime
    guard elapsed > 0 else { return nil }
    let percent = Double(current - before) / (elapsed * 1e9 * Double(now.vcpuCount)) * 100
    return .double(min(100, max(0, percent)))
}

/// `cpu.delay` (virtmeter's own): cumulative time the vCPUs were runnable but waited for a host CPU (the sum of
/// `vcpu.N.delay`, the guest's steal time), in ns.
package struct CPUDelayMeter: DomainValueMeter {
    package let name = "cpu.delay", type = SampleType.cumulative, unit = "ns"
    package let summary = "time the vCPUs waited for a host CPU (sum of vcpu.N.delay: steal time)"
    package let isCeilometerMeter = false
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.totalCPUDelay.map(Volume.counter)
    }
}

/// `cpu.delay_util` (virtmeter's own): Δcpu.delay / (Δt · 10⁹ · vCPUs) · 100 between two polls: the share of time the
/// vCPUs were kept from running by the host's contention.
package struct CPUDelayUtilMeter: DomainValueMeter {
    package let name = "cpu.delay_util", type = SampleType.gauge, unit = "%"
    package let summary = "share of time per vCPU spent waiting for a host CPU since the previous poll"
    package let isCeilometerMeter = false
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        utilisation(now.totalCPUDelay, previous?.totalCPUDelay, now, previous)
    }
}

/// `vcpus`: the number of virtual CPUs.
package struct VCPUsMeter: DomainValueMeter {
    package let name = "vcpus", type = SampleType.gauge, unit = "vcpu"
    package let summary = "number of virtual CPUs of the domain"
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? { .int(Int64(now.vcpuCount)) }
}

/// `memory`: the balloon's current size in MiB (`actual`), as ceilometer reports it.
package struct MemoryMeter: DomainValueMeter {
    package let name = "memory", type = SampleType.gauge, unit = "MiB"
    package let summary = "memory the domain has now: the balloon's current size (actual)"
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.actual.map(mebibytes)
    }
}

/// `memory.usage`: memory the guest uses by its own balloon driver's count.
package struct MemoryUsageMeter: DomainValueMeter {
    package let name = "memory.usage", type = SampleType.gauge, unit = "MiB"
    package let summary = "memory used inside the guest: balloon available - usable (or - unused)"
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        guard let available = now.balloon.available, let free = now.balloon.usable ?? now.balloon.unused,
              available >= free
        else { return nil }
        return mebibytes(available - free)
    }
    package func unavailableReason(_ snapshot: DomainSnapshot) -> String? {
        snapshot.balloon.hasGuestStats || snapshot.state == .shutoff ? nil
            : "the guest reports no balloon statistics: give the domain "
            + "<memballoon model='virtio'><stats period='10'/></memballoon> and load virtio_balloon in the guest"
    }
}

/// `memory.resident`: the host RSS of the domain's process in MiB.
package struct MemoryResidentMeter: DomainValueMeter {
    package let name = "memory.resident", type = SampleType.gauge, unit = "MiB"
    package let summary = "resident memory of the domain's process on the host"
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.rss.map(mebibytes)
    }
}

/// `memory.available`: memory the guest sees, by its balloon driver.
package struct MemoryAvailableMeter: DomainValueMeter {
    package let name = "memory.available", type = SampleType.gauge, unit = "MiB"
    package let summary = "memory available to the guest, as its balloon driver reports it"
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.available.map(mebibytes)
    }
}

/// `memory.swap.in`: memory swapped in by the guest, cumulative.
package struct MemorySwapInMeter: DomainValueMeter {
    package let name = "memory.swap.in", type = SampleType.cumulative, unit = "MiB"
    package let summary = "memory the guest has swapped in"
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.swapOut == nil ? nil : now.balloon.swapIn.map(mebibytes)
    }
}

/// `memory.swap.out`: memory swapped out by the guest, cumulative.
package struct MemorySwapOutMeter: DomainValueMeter {
    package let name = "memory.swap.out", type = SampleType.cumulative, unit = "MiB"
    package let summary = "memory the guest has swapped out"
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.swapIn == nil ? nil : now.balloon.swapOut.map(mebibytes)
    }
}

/// `power.state`: the raw `virDomainState` number, as ceilometer reports it.
package struct PowerStateMeter: DomainValueMeter {
    package let name = "power.state", type = SampleType.gauge, unit = ""
    package let summary = "libvirt's domain state: 1 running, 2 blocked, 3 paused, 4 shutting down, 5 shut off, "
        + "6 crashed, 7 suspended"
    package init() {}
    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        .int(Int64(now.state.rawValue))
    }
}

/// `disk.root.size` and `disk.ephemeral.size`: the flavor's root disk (disk − ephemeral) and ephemeral disk in GiB,
/// from nova's metadata; sampled for shut-off domains too, as ceilometer does.
package struct FlavorDiskMeter: Meter {
    package let name: String
    package let type = SampleType.gauge, unit = "GiB"
    package let devices: DeviceGroups = []
    package let summary: String
    let value: @Sendable (Flavor) -> Int

    package static let root = FlavorDiskMeter(name: "disk.root.size", summary: "size of the flavor's root disk") {
        ($0.diskGiB ?? 0) - ($0.ephemeralGiB ?? 0)
    }
    package static let ephemeral = FlavorDiskMeter(name: "disk.ephemeral.size",
                                                  summary: "size of the flavor's ephemeral disk") { $0.ephemeralGiB ?? 0 }

    package func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void) {
        guard let flavor = now.nova?.flavor else { return }
        body(Reading(.int(Int64(value(flavor)))))
    }
}

/// `perf.*`: counts of the host's perf events for the domain (libvirt's `perf` group), gauges without a unit as in
/// ceilometer. The domain's XML must enable the event (`<perf><event name='cpu_cycles' enabled='yes'/></perf>`).
package struct PerfMeter: DomainValueMeter {
    package let name: String
    package let type = SampleType.gauge, unit = ""
    package let summary: String
    let event: String
    let counter: @Sendable (PerfStats) -> UInt64?

    package static let all: [any Meter] = [
        PerfMeter(name: "perf.cpu.cycles", summary: "CPU cycles (perf event cpu_cycles)", event: "cpu_cycles",
                  counter: \.cpuCycles),
        PerfMeter(name: "perf.instructions", summary: "instructions (perf event instructions)", event: "instructions",
                  counter: \.instructions),
        PerfMeter(name: "perf.cache.references", summary: "cache references (perf event cache_references)",
                  event: "cache_references", counter: \.cacheReferences),
        PerfMeter(name: "perf.cache.misses", summary: "cache misses (perf event cache_misses)",
                  event: "cache_misses", counter: \.cacheMisses),
    ]

    package func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        counter(now.perf).map(Volume.counter)
    }

    package func unavailableReason(_ snapshot: DomainSnapshot) -> String? {
        guard snapshot.perfEnabled, snapshot.state != .shutoff, counter(snapshot.perf) == nil else { return nil }
        return "libvirt returns no perf.\(event) although the domain enables perf events: the event is not enabled "
            + "in the domain XML, or this host's kernel refuses it (perf_event_paranoid, no PMU in a virtual machine)"
    }
}

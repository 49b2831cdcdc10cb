/// A meter with at most one reading per domain, of the domain itself.
public protocol DomainValueMeter: Meter {
    /// The domain's value, or nil when the snapshot does not have it.
    func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume?
}

extension DomainValueMeter {
    public func readings(_ now: DomainSnapshot, previous: DomainSnapshot?) -> [Reading] {
        value(now, previous: previous).map { [Reading($0)] } ?? []
    }
}

/// KiB as MiB, a float as ceilometer's `value / units.Ki` gives it.
func mebibytes(_ kib: UInt64) -> Volume { .double(Double(kib) / 1024) }

/// The domain-level meters of issue 2, in `virtmeter meters` order.
public enum InstanceMeters {
    public static let all: [any Meter] = [
        CPUMeter(), CPUUtilMeter(), VCPUsMeter(), MemoryMeter(), MemoryUsageMeter(), MemoryResidentMeter(),
        MemoryAvailableMeter(), MemorySwapInMeter(), MemorySwapOutMeter(), PowerStateMeter(),
    ]
}

/// `cpu`: cumulative guest CPU time in ns, with the vCPU count as `cpu_number`.
public struct CPUMeter: Meter {
    public let name = "cpu", type = SampleType.cumulative, unit = "ns"
    public let summary = "CPU time used by the guest (sum of vCPU time and wait, else the domain's cpu.time)"
    public init() {}
    public func readings(_ now: DomainSnapshot, previous: DomainSnapshot?) -> [Reading] {
        guard let time = now.totalCPUTime else { return [] }
        return [Reading(.counter(time), metadata: [("cpu_number", .int(Int64(now.vcpuCount)))])]
    }
}

/// `cpu_util`: Δcpu / (Δt · 10⁹ · vCPUs) · 100 between two polls, clamped to [0, 100].
public struct CPUUtilMeter: DomainValueMeter {
    public let name = "cpu_util", type = SampleType.gauge, unit = "%"
    public let summary = "average CPU utilisation per vCPU since the previous poll (none on the first poll)"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        guard let previous, let current = now.totalCPUTime, let before = previous.totalCPUTime,
              current >= before, now.vcpuCount > 0
        else { return nil }
        let elapsed = now.monotonicTime - previous.monotonicTime
        guard elapsed > 0 else { return nil }
        let percent = Double(current - before) / (elapsed * 1e9 * Double(now.vcpuCount)) * 100
        return .double(min(100, max(0, percent)))
    }
}

/// `vcpus`: the number of virtual CPUs.
public struct VCPUsMeter: DomainValueMeter {
    public let name = "vcpus", type = SampleType.gauge, unit = "vcpu"
    public let summary = "number of virtual CPUs of the domain"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? { .int(Int64(now.vcpuCount)) }
}

/// `memory`: memory allocated to the domain in MiB.
public struct MemoryMeter: DomainValueMeter {
    public let name = "memory", type = SampleType.gauge, unit = "MiB"
    public let summary = "memory allocated to the domain (its maximum memory)"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.maxMemoryKiB % 1024 == 0 ? .int(Int64(now.maxMemoryKiB / 1024)) : mebibytes(now.maxMemoryKiB)
    }
}

/// `memory.usage`: memory the guest uses by its own balloon driver's count.
public struct MemoryUsageMeter: DomainValueMeter {
    public let name = "memory.usage", type = SampleType.gauge, unit = "MiB"
    public let summary = "memory used inside the guest: balloon available - usable (or - unused)"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        guard let available = now.balloon.available, let free = now.balloon.usable ?? now.balloon.unused,
              available >= free
        else { return nil }
        return mebibytes(available - free)
    }
    public func unavailableReason(_ snapshot: DomainSnapshot) -> String? {
        snapshot.balloon.hasGuestStats ? nil
            : "the guest reports no balloon statistics: give the domain "
            + "<memballoon model='virtio'><stats period='10'/></memballoon> and load virtio_balloon in the guest"
    }
}

/// `memory.resident`: the host RSS of the domain's process in MiB.
public struct MemoryResidentMeter: DomainValueMeter {
    public let name = "memory.resident", type = SampleType.gauge, unit = "MiB"
    public let summary = "resident memory of the domain's process on the host"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.rss.map(mebibytes)
    }
}

/// `memory.available`: memory the guest sees, by its balloon driver.
public struct MemoryAvailableMeter: DomainValueMeter {
    public let name = "memory.available", type = SampleType.gauge, unit = "MiB"
    public let summary = "memory available to the guest, as its balloon driver reports it"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.available.map(mebibytes)
    }
}

/// `memory.swap.in`: memory swapped in by the guest, cumulative.
public struct MemorySwapInMeter: DomainValueMeter {
    public let name = "memory.swap.in", type = SampleType.cumulative, unit = "MiB"
    public let summary = "memory the guest has swapped in"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.swapIn.map(mebibytes)
    }
}

/// `memory.swap.out`: memory swapped out by the guest, cumulative.
public struct MemorySwapOutMeter: DomainValueMeter {
    public let name = "memory.swap.out", type = SampleType.cumulative, unit = "MiB"
    public let summary = "memory the guest has swapped out"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        now.balloon.swapOut.map(mebibytes)
    }
}

/// `power.state`: nova's power state number for the domain's state.
public struct PowerStateMeter: DomainValueMeter {
    public let name = "power.state", type = SampleType.gauge, unit = ""
    public let summary = "power state (nova's numbering: 1 running, 3 paused, 4 shut down, 6 crashed, 7 suspended)"
    public init() {}
    public func value(_ now: DomainSnapshot, previous: DomainSnapshot?) -> Volume? {
        .int(Int64(now.state.novaPowerState))
    }
}

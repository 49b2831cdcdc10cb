/// A domain's state as libvirt names it (`virDomainState`); `power.state` reports the raw number, as ceilometer does.
package enum DomainState: Int, Sendable, CaseIterable {
    case noState = 0, running, blocked, paused, shutdown, shutoff, crashed, pmSuspended

    /// The vm state word ceilometer's libvirt discovery puts in `resource_metadata.state` (its
    /// `LIBVIRT_POWER_STATE`).
    package var name: String {
        switch self {
        case .noState: return "pending"
        case .running, .blocked: return "running"
        case .paused: return "paused"
        case .shutdown, .shutoff: return "shutdown"
        case .crashed: return "crashed"
        case .pmSuspended: return "suspended"
        }
    }

    /// The state in a word for people (`virtmeter check`): pending, running, paused, stopped, crashed, suspended.
    package var word: String {
        switch self {
        case .shutdown, .shutoff: return "stopped"
        default: return name
        }
    }

    /// The status word ceilometer's libvirt discovery puts in `resource_metadata.status` (its `LIBVIRT_STATUS`).
    package var status: String {
        switch self {
        case .noState: return "building"
        case .running, .blocked: return "active"
        case .paused: return "paused"
        case .shutdown, .shutoff: return "stopped"
        case .crashed: return "error"
        case .pmSuspended: return "suspended"
        }
    }
}

/// A name and an optional text, in document order: nova's flavor extra specs, image properties, filter parameters.
package struct NamedText: Sendable, Equatable {
    package var name: String
    /// nil for an element without text (ceilometer then sends null).
    package var text: String?
    package init(_ name: String, _ text: String?) {
        self.name = name
        self.text = text
    }
}

/// What virtmeter reads, and for which domains: the options an operator knows from ceilometer's compute agent.
package struct InspectionOptions: Sendable, Equatable {
    /// Whether domains without nova metadata are sampled (virtmeter's default, for plain libvirt hosts) or skipped
    /// (what ceilometer's libvirt discovery does).
    package enum DomainsWithoutNova: String, Sendable, CaseIterable {
        case keep, skip
    }
    /// Sample shut-off domains: power.state, vcpus, memory and disk sizes (ceilometer's
    /// `[compute] report_stopped_instance_metrics`); off by default, as in ceilometer.
    package var sampleShutOffDomains = false
    /// Fill `user_name` and `project_name` from the names nova writes into the domain XML (ceilometer fills them from
    /// keystone with `[polling] identity_name_discovery`); off by default, as in ceilometer.
    package var namesFromNova = false
    package var domainsWithoutNova = DomainsWithoutNova.keep

    /// The defaults: shut-off domains not sampled, names null, domains without nova metadata kept.
    package init(sampleShutOffDomains: Bool = false, namesFromNova: Bool = false,
                domainsWithoutNova: DomainsWithoutNova = .keep) {
        self.sampleShutOffDomains = sampleShutOffDomains
        self.namesFromNova = namesFromNova
        self.domainsWithoutNova = domainsWithoutNova
    }
}

/// Time one vCPU has run, waited to run, and been delayed by the host (steal time), in nanoseconds (`vcpu.N.time`,
/// `vcpu.N.wait`, `vcpu.N.delay`).
package struct VCPUTime: Sendable, Equatable {
    package var time: UInt64?
    package var wait: UInt64?
    package var delay: UInt64?
    package init(time: UInt64?, wait: UInt64?, delay: UInt64? = nil) {
        self.time = time
        self.wait = wait
        self.delay = delay
    }
}

/// The `perf` stats group (`perf.cpu_cycles`, ...): counts of the host's perf events for the domain, nil where the
/// event is not enabled or the kernel refused it.
package struct PerfStats: Sendable, Equatable {
    package var cpuCycles: UInt64?
    package var instructions: UInt64?
    package var cacheReferences: UInt64?
    package var cacheMisses: UInt64?
    package init(cpuCycles: UInt64? = nil, instructions: UInt64? = nil, cacheReferences: UInt64? = nil,
                cacheMisses: UInt64? = nil) {
        self.cpuCycles = cpuCycles
        self.instructions = instructions
        self.cacheReferences = cacheReferences
        self.cacheMisses = cacheMisses
    }
}

/// The guest's balloon statistics in KiB (`balloon.*` / `virDomainMemoryStats`); each is nil when not reported.
package struct BalloonStats: Sendable, Equatable {
    package var actual: UInt64?
    package var available: UInt64?
    package var unused: UInt64?
    package var usable: UInt64?
    package var rss: UInt64?
    package var swapIn: UInt64?
    package var swapOut: UInt64?
    package var lastUpdate: UInt64?
    package init(actual: UInt64? = nil, available: UInt64? = nil, unused: UInt64? = nil, usable: UInt64? = nil,
                rss: UInt64? = nil, swapIn: UInt64? = nil, swapOut: UInt64? = nil, lastUpdate: UInt64? = nil) {
        self.actual = actual
        self.available = available
        self.unused = unused
        self.usable = usable
        self.rss = rss
        self.swapIn = swapIn
        self.swapOut = swapOut
        self.lastUpdate = lastUpdate
    }

    /// Whether the guest's balloon driver reports its own memory (`available` and `unused` or `usable`).
    package var hasGuestStats: Bool { available != nil && (usable != nil || unused != nil) }
}

/// Counters of one disk (`block.N.*` / `virDomainBlockStats`); nil where not reported.
package struct DiskStats: Sendable, Equatable {
    package var name: String
    package var readBytes: UInt64?
    package var readRequests: UInt64?
    package var readTimeNs: UInt64?
    package var writeBytes: UInt64?
    package var writeRequests: UInt64?
    package var writeTimeNs: UInt64?
    package var errors: UInt64?
    package var flushRequests: UInt64?
    package var flushTimeNs: UInt64?
    package var capacity: UInt64?
    package var allocation: UInt64?
    package var physical: UInt64?
    /// The disk's resource id and metadata, when they were built with the domain's XML (else the meters build them).
    package var resource: DeviceResource?
    package init(name: String) { self.name = name }
}

/// Counters of one network interface (`net.N.*` / `virDomainInterfaceStats`); nil where not reported.
package struct InterfaceStats: Sendable, Equatable {
    /// The host-side device (`tap…`, `vnet0`).
    package var name: String
    package var mac: String?
    /// The `<filterref filter=…>` name, its parameters (names lowercased), the `<virtualport>`'s `interfaceid` and
    /// the source bridge: ceilometer's vNIC metadata.
    package var filterRef: String?
    package var filterParameters: [NamedText] = []
    package var interfaceID: String?
    package var bridge: String?
    package var rxBytes: UInt64?
    package var rxPackets: UInt64?
    package var rxErrors: UInt64?
    package var rxDrop: UInt64?
    package var txBytes: UInt64?
    package var txPackets: UInt64?
    package var txErrors: UInt64?
    package var txDrop: UInt64?
    /// The vNIC's resource id and metadata, when they were built with the domain's XML (else the meters build them).
    package var resource: DeviceResource?
    package init(name: String, mac: String? = nil) {
        self.name = name
        self.mac = mac
    }
}

/// A nova flavor as nova writes it into the domain XML.
package struct Flavor: Sendable, Equatable {
    package var id: String?
    package var name: String?
    package var vcpus: Int?
    package var ramMiB: Int?
    package var diskGiB: Int?
    package var ephemeralGiB: Int?
    package var swapMiB: Int?
    /// `<nova:extraSpecs>` (nova 2025.2 and later); nil when the element is absent.
    package var extraSpecs: [NamedText]?
    package init(id: String? = nil, name: String? = nil, vcpus: Int? = nil, ramMiB: Int? = nil, diskGiB: Int? = nil,
                ephemeralGiB: Int? = nil, swapMiB: Int? = nil) {
        self.id = id
        self.name = name
        self.vcpus = vcpus
        self.ramMiB = ramMiB
        self.diskGiB = diskGiB
        self.ephemeralGiB = ephemeralGiB
        self.swapMiB = swapMiB
    }
}

/// Nova's `<nova:instance>` metadata (namespace 1.1, or 1.0 before Wallaby).
package struct NovaMetadata: Sendable, Equatable {
    package var displayName: String?
    package var flavor: Flavor
    package var userID: String?
    package var userName: String?
    package var projectID: String?
    package var projectName: String?
    /// The image's uuid when the instance boots from an image (`<nova:root type="image" uuid=…>`).
    package var imageID: String?
    /// `<nova:image>` (nova 2025.2 and later) as ceilometer's `image_meta`: `base_image_ref`, `container_format`,
    /// `disk_format`, `min_disk`, `min_ram` and the image properties; nil when the element is absent.
    package var imageMeta: [NamedText]?
    /// Whether the metadata has every part ceilometer's libvirt discovery requires (name, flavor, user and project
    /// uuids); ceilometer skips a domain without them.
    package var isComplete: Bool { hasName && flavor.name != nil && userID != nil && projectID != nil }
    /// Whether `<nova:name>` is present (its text may be empty).
    package var hasName = false
    package init(displayName: String? = nil, flavor: Flavor = Flavor(), userID: String? = nil, userName: String? = nil,
                projectID: String? = nil, projectName: String? = nil, imageID: String? = nil) {
        self.displayName = displayName
        self.flavor = flavor
        self.userID = userID
        self.userName = userName
        self.projectID = projectID
        self.projectName = projectName
        self.imageID = imageID
        self.hasName = displayName != nil
    }
}

/// Everything one poll read about one running domain; meters turn it into samples without calling libvirt.
package struct DomainSnapshot: Sendable, Equatable {
    package var uuid: String
    package var name: String
    package var state: DomainState
    package var vcpuCount: Int
    /// Total CPU time in ns (`cpu.time` / `virDomainGetInfo`).
    package var cpuTime: UInt64?
    /// Per-vCPU time and wait, when the driver reports them.
    package var vcpuTimes: [VCPUTime]
    package var maxMemoryKiB: UInt64
    package var memoryKiB: UInt64
    package var balloon: BalloonStats
    package var disks: [DiskStats]
    package var interfaces: [InterfaceStats]
    package var nova: NovaMetadata?
    package var architecture: String?
    package var osType: String?
    /// A shut-off domain read only for its metadata (sampling shut-off domains is off): only the meters that come from
    /// nova's flavor (`disk.root.size`, `disk.ephemeral.size`) sample it, as in ceilometer.
    package var metadataOnly = false
    /// The `perf` group's counters, and whether the domain's XML enables any perf event.
    package var perf = PerfStats()
    package var perfEnabled = false
    /// Seconds on the monotonic clock when the snapshot was read; rates are computed from it.
    package var monotonicTime: Double
    /// The bulk-stats values declared meters read (`StatsFieldRequest`); empty when none is polled.
    package var statsFields: [StatsField] = []

    package init(uuid: String, name: String, state: DomainState = .running, vcpuCount: Int, cpuTime: UInt64? = nil,
                vcpuTimes: [VCPUTime] = [], maxMemoryKiB: UInt64, memoryKiB: UInt64,
                balloon: BalloonStats = BalloonStats(), disks: [DiskStats] = [], interfaces: [InterfaceStats] = [],
                nova: NovaMetadata? = nil, architecture: String? = nil, osType: String? = nil,
                monotonicTime: Double) {
        self.uuid = uuid
        self.name = name
        self.state = state
        self.vcpuCount = vcpuCount
        self.cpuTime = cpuTime
        self.vcpuTimes = vcpuTimes
        self.maxMemoryKiB = maxMemoryKiB
        self.memoryKiB = memoryKiB
        self.balloon = balloon
        self.disks = disks
        self.interfaces = interfaces
        self.nova = nova
        self.architecture = architecture
        self.osType = osType
        self.monotonicTime = monotonicTime
    }

    /// The guest's cumulative CPU time as ceilometer computes it: the sum over vCPUs of time + wait, or the
    /// domain's total `cpu.time` where any vCPU lacks either figure.
    package var totalCPUTime: UInt64? {
        if vcpuTimes.count == vcpuCount, vcpuCount > 0 {
            var sum: UInt64 = 0
            for vcpu in vcpuTimes {
                guard let time = vcpu.time, let wait = vcpu.wait else { return cpuTime }
                sum &+= time &+ wait
            }
            return sum
        }
        return cpuTime
    }

    /// The sum over vCPUs of `vcpu.N.delay`, or nil where any vCPU lacks it.
    package var totalCPUDelay: UInt64? {
        guard vcpuTimes.count == vcpuCount, vcpuCount > 0 else { return nil }
        var sum: UInt64 = 0
        for vcpu in vcpuTimes {
            guard let delay = vcpu.delay else { return nil }
            sum &+= delay
        }
        return sum
    }
}

/// The source of snapshots: one call per cycle reads every running domain.
package protocol Hypervisor: Sendable {
    /// Reads all running domains once. Throws when the hypervisor cannot be read at all; a single domain that
    /// cannot be read is left out instead.
    func poll() async throws -> [DomainSnapshot]
}

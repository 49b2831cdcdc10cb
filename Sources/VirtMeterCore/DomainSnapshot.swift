/// A domain's state as libvirt names it (`virDomainState`).
public enum DomainState: Int, Sendable, CaseIterable {
    case noState = 0, running, blocked, paused, shutdown, shutoff, crashed, pmSuspended

    /// Nova's power state for this libvirt state, the number ceilometer's `power.state` reports.
    public var novaPowerState: Int {
        switch self {
        case .noState: return 0
        case .running, .blocked: return 1
        case .paused: return 3
        case .shutdown, .shutoff: return 4
        case .crashed: return 6
        case .pmSuspended: return 7
        }
    }

    /// The vm state word ceilometer puts in `resource_metadata.state`.
    public var name: String {
        switch self {
        case .noState: return "pending"
        case .running, .blocked: return "running"
        case .paused: return "paused"
        case .shutdown, .shutoff: return "stopped"
        case .crashed: return "crashed"
        case .pmSuspended: return "suspended"
        }
    }
}

/// Time one vCPU has run, and waited to run, in nanoseconds (`vcpu.N.time`, `vcpu.N.wait`).
public struct VCPUTime: Sendable, Equatable {
    public var time: UInt64?
    public var wait: UInt64?
    public init(time: UInt64?, wait: UInt64?) {
        self.time = time
        self.wait = wait
    }
}

/// The guest's balloon statistics in KiB (`balloon.*` / `virDomainMemoryStats`); each is nil when not reported.
public struct BalloonStats: Sendable, Equatable {
    public var actual: UInt64?
    public var available: UInt64?
    public var unused: UInt64?
    public var usable: UInt64?
    public var rss: UInt64?
    public var swapIn: UInt64?
    public var swapOut: UInt64?
    public var lastUpdate: UInt64?
    public init(actual: UInt64? = nil, available: UInt64? = nil, unused: UInt64? = nil, usable: UInt64? = nil,
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
    public var hasGuestStats: Bool { available != nil && (usable != nil || unused != nil) }
}

/// Counters of one disk (`block.N.*` / `virDomainBlockStats`); nil where not reported.
public struct DiskStats: Sendable, Equatable {
    public var name: String
    public var readBytes: UInt64?
    public var readRequests: UInt64?
    public var readTimeNs: UInt64?
    public var writeBytes: UInt64?
    public var writeRequests: UInt64?
    public var writeTimeNs: UInt64?
    public var errors: UInt64?
    public var capacity: UInt64?
    public var allocation: UInt64?
    public var physical: UInt64?
    public init(name: String) { self.name = name }
}

/// Counters of one network interface (`net.N.*` / `virDomainInterfaceStats`); nil where not reported.
public struct InterfaceStats: Sendable, Equatable {
    /// The host-side device (`tap…`, `vnet0`).
    public var name: String
    public var mac: String?
    public var rxBytes: UInt64?
    public var rxPackets: UInt64?
    public var rxErrors: UInt64?
    public var rxDrop: UInt64?
    public var txBytes: UInt64?
    public var txPackets: UInt64?
    public var txErrors: UInt64?
    public var txDrop: UInt64?
    public init(name: String, mac: String? = nil) {
        self.name = name
        self.mac = mac
    }
}

/// A nova flavor as nova writes it into the domain XML.
public struct Flavor: Sendable, Equatable {
    public var id: String?
    public var name: String?
    public var vcpus: Int?
    public var ramMiB: Int?
    public var diskGiB: Int?
    public var ephemeralGiB: Int?
    public var swapMiB: Int?
    public init(id: String? = nil, name: String? = nil, vcpus: Int? = nil, ramMiB: Int? = nil, diskGiB: Int? = nil,
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
public struct NovaMetadata: Sendable, Equatable {
    public var displayName: String?
    public var flavor: Flavor
    public var userID: String?
    public var userName: String?
    public var projectID: String?
    public var projectName: String?
    /// The image's uuid when the instance boots from an image (`<nova:root type="image" uuid=…>`).
    public var imageID: String?
    public init(displayName: String? = nil, flavor: Flavor = Flavor(), userID: String? = nil, userName: String? = nil,
                projectID: String? = nil, projectName: String? = nil, imageID: String? = nil) {
        self.displayName = displayName
        self.flavor = flavor
        self.userID = userID
        self.userName = userName
        self.projectID = projectID
        self.projectName = projectName
        self.imageID = imageID
    }
}

/// Everything one poll read about one running domain; meters turn it into samples without calling libvirt.
public struct DomainSnapshot: Sendable, Equatable {
    public var uuid: String
    public var name: String
    public var state: DomainState
    public var vcpuCount: Int
    /// Total CPU time in ns (`cpu.time` / `virDomainGetInfo`).
    public var cpuTime: UInt64?
    /// Per-vCPU time and wait, when the driver reports them.
    public var vcpuTimes: [VCPUTime]
    public var maxMemoryKiB: UInt64
    public var memoryKiB: UInt64
    public var balloon: BalloonStats
    public var disks: [DiskStats]
    public var interfaces: [InterfaceStats]
    public var nova: NovaMetadata?
    public var architecture: String?
    public var osType: String?
    /// Seconds on the monotonic clock when the snapshot was read; rates are computed from it.
    public var monotonicTime: Double
    /// The bulk-stats values declared meters read (`StatsFieldRequest`); empty when none is polled.
    public var statsFields: [StatsField] = []

    public init(uuid: String, name: String, state: DomainState = .running, vcpuCount: Int, cpuTime: UInt64? = nil,
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
    public var totalCPUTime: UInt64? {
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
}

/// The source of snapshots: one call per cycle reads every running domain.
public protocol Hypervisor: Sendable {
    /// Reads all running domains once. Throws when the hypervisor cannot be read at all; a single domain that
    /// cannot be read is left out instead.
    func poll() async throws -> [DomainSnapshot]
}

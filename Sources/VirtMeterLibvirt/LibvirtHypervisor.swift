import CLibvirt
import Dispatch
import Foundation
import Logging
import VirtMeterCore

/// How the last poll read libvirt: a test (or an operator) can see whether the bulk path served every domain.
public struct InspectionCounters: Sendable, Equatable {
    /// Domains in the last bulk answer.
    public var domains = 0
    /// Domains for which at least one group had to be read with per-domain calls.
    public var fallbackDomains = 0
    /// Per-domain libvirt calls made in the last poll (fallbacks and XML reads).
    public var perDomainCalls = 0
    /// Domains skipped because they vanished or could not be read.
    public var skippedDomains = 0
}

/// The libvirt inspector: reads every running domain with one `virConnectGetAllDomainStats` call per cycle and
/// falls back to per-domain calls for the groups a driver leaves out (libvirt's test driver returns state only).
/// All libvirt calls run on a serial queue of its own, never on Swift's cooperative pool; mutable state is touched
/// only there, which is why this class is `@unchecked Sendable`.
public final class LibvirtHypervisor: Hypervisor, @unchecked Sendable {
    /// The stats groups asked for in bulk.
    static let groups = VIR_DOMAIN_STATS_STATE.rawValue | VIR_DOMAIN_STATS_CPU_TOTAL.rawValue
        | VIR_DOMAIN_STATS_BALLOON.rawValue | VIR_DOMAIN_STATS_VCPU.rawValue | VIR_DOMAIN_STATS_INTERFACE.rawValue
        | VIR_DOMAIN_STATS_BLOCK.rawValue

    private struct CachedXML {
        var domainID: Int32
        var xml: DomainXML
        var readAt: Double
    }

    public let uri: String
    private let readOnly: Bool
    /// The open connection; nil once it died, until the next poll opens a new one.
    private var connection: LibvirtConnection?
    let queue = DispatchQueue(label: "virtmeter.libvirt")
    private let logger: Logger
    private let xmlMaxAge: Double
    private var xmlCache: [String: CachedXML] = [:]
    private var counters = InspectionCounters()

    /// Connects to `uri` (read-only unless `readOnly` is false). `xmlMaxAge` bounds how long a domain's parsed XML
    /// (nova metadata, devices) is reused; it is read again at once when the domain restarts. Throws `LibvirtError`.
    public init(uri: String = "qemu:///system", readOnly: Bool = true, xmlMaxAge: Double = 600,
                logger: Logger = Logger(label: "virtmeter.libvirt")) throws {
        self.uri = uri
        self.readOnly = readOnly
        self.logger = logger
        self.xmlMaxAge = xmlMaxAge
        connection = try queue.sync { () throws(LibvirtError) -> LibvirtConnection in
            try LibvirtConnection(uri: uri, readOnly: readOnly)
        }
    }

    /// Whether the connection is read-only (the default: monitoring needs no write access).
    public var isReadOnly: Bool { readOnly }

    /// The connection to use: the open one while it is alive, else a new one (libvirtd restarted, the socket
    /// closed). Runs on `queue`.
    func liveConnection() throws(LibvirtError) -> LibvirtConnection {
        if let connection, connection.isAlive { return connection }
        if connection != nil {
            connection = nil
            xmlCache = [:]
        }
        let opened = try LibvirtConnection(uri: uri, readOnly: readOnly)
        connection = opened
        logger.debug("libvirt connection reopened", metadata: ["uri": "\(uri)"])
        return opened
    }

    /// Counters of the last poll.
    public var lastCounters: InspectionCounters { queue.sync { counters } }

    public func poll() async throws -> [DomainSnapshot] {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { () throws(LibvirtError) in try self.readAll() })
            }
        }
    }

    /// Reads every running domain; runs on `queue`.
    private func readAll() throws(LibvirtError) -> [DomainSnapshot] {
        let connection = try liveConnection()
        var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
        let flags = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE.rawValue
        let count = virConnectGetAllDomainStats(connection.pointer, Self.groups, &records, flags)
        guard count >= 0, let records else {
            let error = LibvirtError.last("virConnectGetAllDomainStats(\(uri))")
            // A dead connection (libvirtd restarted) is replaced at the next poll.
            if !connection.isAlive { self.connection = nil }
            throw error
        }
        defer { virDomainStatsRecordListFree(records) }
        let readAt = Clock.monotonic()
        counters = InspectionCounters(domains: Int(count))
        var snapshots: [DomainSnapshot] = []
        snapshots.reserveCapacity(Int(count))
        var seen = Set<String>()
        for index in 0..<Int(count) {
            guard let record = records[index], let domain = record.pointee.dom else { continue }
            let bulk = BulkStats(record.pointee.params, count: record.pointee.nparams)
            do {
                let snapshot = try snapshot(domain, bulk, readAt: readAt)
                seen.insert(snapshot.uuid)
                snapshots.append(snapshot)
            } catch {
                counters.skippedDomains += 1
                let level: Logger.Level = error.isNoDomain ? .debug : .warning
                logger.log(level: level, "domain skipped this cycle", metadata: ["error": "\(error)"])
            }
        }
        // Every domain read this cycle is in the cache: equal counts mean nothing else is.
        if xmlCache.count > seen.count { xmlCache = xmlCache.filter { seen.contains($0.key) } }
        return snapshots
    }

    /// One domain's snapshot from its bulk record, with per-domain calls for the groups the record lacks.
    func snapshot(_ domain: virDomainPtr, _ bulk: BulkStats, readAt: Double)
        throws(LibvirtError) -> DomainSnapshot {
        let uuid = try uuidString(domain)
        let name = virDomainGetName(domain).map { String(cString: $0) } ?? uuid
        let xml = try domainXML(domain, uuid: uuid, readAt: readAt)
        var snapshot = DomainSnapshot(
            uuid: uuid, name: name, state: bulk.state ?? .running, vcpuCount: bulk.vcpuCount ?? 0,
            cpuTime: bulk.cpuTime, vcpuTimes: bulk.vcpuTimes.sorted { $0.key < $1.key }.map(\.value),
            maxMemoryKiB: bulk.maxMemoryKiB ?? 0, memoryKiB: bulk.memoryKiB ?? 0, balloon: bulk.balloon,
            disks: bulk.disks.sorted { $0.key < $1.key }.map(\.value).filter { !$0.name.isEmpty },
            interfaces: bulk.interfaces.sorted { $0.key < $1.key }.map(\.value).filter { !$0.name.isEmpty },
            nova: xml.nova, architecture: xml.architecture, osType: xml.osType, monotonicTime: readAt)
        for index in snapshot.interfaces.indices {
            snapshot.interfaces[index].mac = xml.interfaces.first { $0.device == snapshot.interfaces[index].name }?.mac
        }
        let fellBack = counters.perDomainCalls
        if bulk.cpuTime == nil || bulk.vcpuCount == nil || bulk.maxMemoryKiB == nil {
            try readInfo(domain, into: &snapshot)
        }
        if bulk.memoryKiB == nil { try readMemoryStats(domain, into: &snapshot) }
        if !bulk.hasBlockGroup { snapshot.disks = try readDisks(domain, xml.disks) }
        if !bulk.hasInterfaceGroup { snapshot.interfaces = try readInterfaces(domain, xml.interfaces) }
        // A memballoon without a stats period: QEMU reports the figures the guest sent once at boot, for ever.
        // They are not the guest's memory now, so virtmeter treats them as absent (no memory.usage, a warning).
        if xml.hasMemballoon, (xml.balloonStatsPeriod ?? 0) == 0, snapshot.balloon.lastUpdate != nil {
            snapshot.balloon = BalloonStats(actual: snapshot.balloon.actual, rss: snapshot.balloon.rss)
        }
        if counters.perDomainCalls > fellBack { counters.fallbackDomains += 1 }
        return snapshot
    }

    func uuidString(_ domain: virDomainPtr) throws(LibvirtError) -> String {
        let uuid = withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(VIR_UUID_STRING_BUFLEN)) { buffer in
            virDomainGetUUIDString(domain, buffer.baseAddress) == 0 ? String(cString: buffer.baseAddress!) : nil
        }
        guard let uuid else { throw LibvirtError.last("virDomainGetUUIDString") }
        return uuid
    }

    /// The domain's parsed XML, from the cache unless the domain restarted (new id) or the entry is too old.
    private func domainXML(_ domain: virDomainPtr, uuid: String, readAt: Double) throws(LibvirtError) -> DomainXML {
        let id = Int32(bitPattern: virDomainGetID(domain))
        if let cached = xmlCache[uuid], cached.domainID == id, readAt - cached.readAt < xmlMaxAge {
            return cached.xml
        }
        counters.perDomainCalls += 1
        guard let text = virDomainGetXMLDesc(domain, 0) else { throw LibvirtError.last("virDomainGetXMLDesc(\(uuid))") }
        defer { free(text) }
        let xml: DomainXML
        do {
            xml = try DomainXML(parsing: String(cString: text))
        } catch {
            logger.warning("domain XML unreadable, reading it without nova metadata",
                           metadata: ["uuid": "\(uuid)", "error": "\(error)"])
            xml = DomainXML()
        }
        xmlCache[uuid] = CachedXML(domainID: id, xml: xml, readAt: readAt)
        return xml
    }

    private func readInfo(_ domain: virDomainPtr, into snapshot: inout DomainSnapshot) throws(LibvirtError) {
        counters.perDomainCalls += 1
        var info = virDomainInfo()
        guard virDomainGetInfo(domain, &info) == 0 else {
            throw LibvirtError.last("virDomainGetInfo(\(snapshot.name))")
        }
        snapshot.state = DomainState(rawValue: Int(info.state)) ?? snapshot.state
        snapshot.cpuTime = snapshot.cpuTime ?? UInt64(info.cpuTime)
        if snapshot.vcpuCount == 0 { snapshot.vcpuCount = Int(info.nrVirtCpu) }
        if snapshot.maxMemoryKiB == 0 { snapshot.maxMemoryKiB = UInt64(info.maxMem) }
        if snapshot.memoryKiB == 0 { snapshot.memoryKiB = UInt64(info.memory) }
    }

    private func readMemoryStats(_ domain: virDomainPtr, into snapshot: inout DomainSnapshot) throws(LibvirtError) {
        counters.perDomainCalls += 1
        let size = Int(VIR_DOMAIN_MEMORY_STAT_NR.rawValue)
        let stats = withUnsafeTemporaryAllocation(of: virDomainMemoryStatStruct.self, capacity: size) { buffer in
            let count = virDomainMemoryStats(domain, buffer.baseAddress, UInt32(size), 0)
            return count < 0 ? nil : Array(buffer.prefix(Int(count)))
        }
        guard let stats else {
            let error = LibvirtError.last("virDomainMemoryStats(\(snapshot.name))")
            if error.isUnsupported { return }
            throw error
        }
        for stat in stats {
            let value = UInt64(stat.val)
            switch Int32(stat.tag) {
            case Int32(VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON.rawValue): snapshot.balloon.actual = value
            case Int32(VIR_DOMAIN_MEMORY_STAT_AVAILABLE.rawValue): snapshot.balloon.available = value
            case Int32(VIR_DOMAIN_MEMORY_STAT_UNUSED.rawValue): snapshot.balloon.unused = value
            case Int32(VIR_DOMAIN_MEMORY_STAT_USABLE.rawValue): snapshot.balloon.usable = value
            case Int32(VIR_DOMAIN_MEMORY_STAT_RSS.rawValue): snapshot.balloon.rss = value
            case Int32(VIR_DOMAIN_MEMORY_STAT_SWAP_IN.rawValue): snapshot.balloon.swapIn = value
            case Int32(VIR_DOMAIN_MEMORY_STAT_SWAP_OUT.rawValue): snapshot.balloon.swapOut = value
            case Int32(VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE.rawValue): snapshot.balloon.lastUpdate = value
            default: break
            }
        }
        if let actual = snapshot.balloon.actual { snapshot.memoryKiB = actual }
    }

    /// libvirt reports -1 for a counter it does not have.
    private static func counter(_ value: Int64) -> UInt64? { value < 0 ? nil : UInt64(value) }

    private func readDisks(_ domain: virDomainPtr, _ names: [String]) throws(LibvirtError) -> [DiskStats] {
        var disks: [DiskStats] = []
        for name in names {
            counters.perDomainCalls += 2
            var stats = virDomainBlockStatsStruct()
            guard virDomainBlockStats(domain, name, &stats, MemoryLayout<virDomainBlockStatsStruct>.size) == 0 else {
                let error = LibvirtError.last("virDomainBlockStats(\(name))")
                if error.isNoDomain { throw error }
                continue   // an empty CD-ROM drive or a disk without stats
            }
            var disk = DiskStats(name: name)
            disk.readBytes = Self.counter(stats.rd_bytes)
            disk.readRequests = Self.counter(stats.rd_req)
            disk.writeBytes = Self.counter(stats.wr_bytes)
            disk.writeRequests = Self.counter(stats.wr_req)
            disk.errors = Self.counter(stats.errs)
            var info = virDomainBlockInfo()
            if virDomainGetBlockInfo(domain, name, &info, 0) == 0 {
                disk.capacity = info.capacity
                disk.allocation = info.allocation
                disk.physical = info.physical
            }
            disks.append(disk)
        }
        return disks
    }

    private func readInterfaces(_ domain: virDomainPtr, _ devices: [(device: String, mac: String?)])
        throws(LibvirtError) -> [InterfaceStats] {
        var interfaces: [InterfaceStats] = []
        for (device, mac) in devices {
            counters.perDomainCalls += 1
            var stats = virDomainInterfaceStatsStruct()
            let size = MemoryLayout<virDomainInterfaceStatsStruct>.size
            guard virDomainInterfaceStats(domain, device, &stats, size) == 0 else {
                let error = LibvirtError.last("virDomainInterfaceStats(\(device))")
                if error.isNoDomain { throw error }
                continue
            }
            var nic = InterfaceStats(name: device, mac: mac)
            nic.rxBytes = Self.counter(stats.rx_bytes)
            nic.rxPackets = Self.counter(stats.rx_packets)
            nic.rxErrors = Self.counter(stats.rx_errs)
            nic.rxDrop = Self.counter(stats.rx_drop)
            nic.txBytes = Self.counter(stats.tx_bytes)
            nic.txPackets = Self.counter(stats.tx_packets)
            nic.txErrors = Self.counter(stats.tx_errs)
            nic.txDrop = Self.counter(stats.tx_drop)
            interfaces.append(nic)
        }
        return interfaces
    }
}

import CLibvirt
import Foundation
import VirtMeterCore

/// One domain's stats record, as a bulk or a per-domain stats call returned it.
struct StatsRecord: Sendable {
    let domain: LibvirtDomain
    let stats: BulkStats
    /// Monotonic seconds in the middle of the call that read it: the best estimate of when its counters were read.
    let readAt: Double
}

/// The libvirt calls virtmeter makes, each a plain function of its arguments (no shared state), so that any of them
/// can run on a worker thread and be abandoned at a deadline. Every C result is turned into Swift values and freed
/// here, on the calling thread, which is also where libvirt's per-thread error is read.
enum DomainCalls {
    /// The stats groups asked for, in bulk and per domain. Each group added here must first be tried against a
    /// stopped guest (`kill -STOP` of its qemu): NOWAIT is not honoured by every group or combination.
    static let groups = VIR_DOMAIN_STATS_STATE.rawValue | VIR_DOMAIN_STATS_CPU_TOTAL.rawValue
        | VIR_DOMAIN_STATS_BALLOON.rawValue | VIR_DOMAIN_STATS_VCPU.rawValue | VIR_DOMAIN_STATS_INTERFACE.rawValue
        | VIR_DOMAIN_STATS_BLOCK.rawValue
    /// NOWAIT: a domain whose job is held by someone else comes back with the groups that need no job, instead of
    /// making the call wait up to 30 s for it.
    static let nowait = VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT.rawValue
    static let bulkFlags = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE.rawValue | nowait
    /// The groups declared meters may add, by a field's first component; only while one of them is polled.
    static let declaredGroups: [String: UInt32] = [
        "perf": VIR_DOMAIN_STATS_PERF.rawValue, "iothread": VIR_DOMAIN_STATS_IOTHREAD.rawValue,
        "memory": VIR_DOMAIN_STATS_MEMORY.rawValue, "dirtyrate": VIR_DOMAIN_STATS_DIRTYRATE.rawValue,
        "vm": VIR_DOMAIN_STATS_VM.rawValue,
    ]

    /// The groups asked for when `wanted` are the fields the declared meters read and the devices the polled meters
    /// read (the block and interface groups only for those).
    static func groups(_ wanted: StatsFieldRequest) -> UInt32 {
        var base = groups
        if !wanted.devices.contains(.disks) { base &= ~VIR_DOMAIN_STATS_BLOCK.rawValue }
        if !wanted.devices.contains(.interfaces) { base &= ~VIR_DOMAIN_STATS_INTERFACE.rawValue }
        return wanted.groups.reduce(base) { $0 | (declaredGroups[$1] ?? 0) }
    }

    /// Stats of every running domain (`domains` nil: `virConnectGetAllDomainStats`), or of the given domains
    /// (`virDomainListGetStats`).
    /// `wanted`: the fields the declared meters read, kept in the records, and their groups added to the call.
    static func stats(_ connection: LibvirtConnection, _ domains: [LibvirtDomain]? = nil,
                      wanted: StatsFieldRequest = .none) -> Result<[StatsRecord], LibvirtError> {
        let groups = groups(wanted)
        var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
        let before = SampleClock.monotonic()
        let count: Int32
        let operation: String
        if let domains {
            var pointers: [virDomainPtr?] = domains.map(\.pointer) + [nil]
            count = virDomainListGetStats(&pointers, groups, &records, nowait)
            operation = "virDomainListGetStats(\(domains.map(\.name).joined(separator: ",")))"
        } else {
            count = virConnectGetAllDomainStats(connection.pointer, groups, &records, bulkFlags)
            operation = "virConnectGetAllDomainStats(\(connection.uri))"
        }
        let readAt = (before + SampleClock.monotonic()) / 2
        guard count >= 0, let records else { return .failure(LibvirtError.last(operation)) }
        defer { virDomainStatsRecordListFree(records) }
        var result: [StatsRecord] = []
        result.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            guard let record = records[index], let pointer = record.pointee.dom,
                  let domain = LibvirtDomain(referencing: pointer)
            else { continue }
            let stats = BulkStats(record.pointee.params, count: record.pointee.nparams, wanted: wanted)
            result.append(StatsRecord(domain: domain, stats: stats, readAt: readAt))
        }
        return .success(result)
    }

    /// The running domains (`virConnectListAllDomains`), without their stats.
    static func runningDomains(_ connection: LibvirtConnection) -> Result<[LibvirtDomain], LibvirtError> {
        listDomains(connection, VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue)
    }

    /// The shut-off domains: defined, not running (`virConnectListAllDomains`). The bulk call covers running ones only.
    static func shutOffDomains(_ connection: LibvirtConnection) -> Result<[LibvirtDomain], LibvirtError> {
        listDomains(connection, VIR_CONNECT_LIST_DOMAINS_INACTIVE.rawValue)
    }

    private static func listDomains(_ connection: LibvirtConnection, _ flags: UInt32)
        -> Result<[LibvirtDomain], LibvirtError> {
        var list: UnsafeMutablePointer<virDomainPtr?>?
        let count = virConnectListAllDomains(connection.pointer, &list, flags)
        guard count >= 0, let list else {
            return .failure(LibvirtError.last("virConnectListAllDomains(\(connection.uri))"))
        }
        defer { free(list) }
        var domains: [LibvirtDomain] = []
        for index in 0..<Int(count) {
            guard let pointer = list[index] else { continue }
            if let domain = LibvirtDomain(referencing: pointer) { domains.append(domain) }
            virDomainFree(pointer)
        }
        return .success(domains)
    }

    /// The domain with `uuid` on `connection` (`virDomainLookupByUUIDString`).
    static func lookup(_ connection: LibvirtConnection, uuid: String) throws(LibvirtError) -> LibvirtDomain {
        let operation = "virDomainLookupByUUIDString(\(uuid))"
        guard let pointer = virDomainLookupByUUIDString(connection.pointer, uuid) else {
            throw LibvirtError.last(operation)
        }
        defer { virDomainFree(pointer) }
        guard let domain = LibvirtDomain(referencing: pointer) else {
            throw LibvirtError(operation: operation, code: Int32(VIR_ERR_NO_DOMAIN.rawValue), message: "no uuid")
        }
        return domain
    }

    /// The domain's XML, parsed; unparsable XML is an empty `DomainXML` and `malformed` says why.
    static func xml(_ domain: LibvirtDomain) throws(LibvirtError) -> (xml: DomainXML, malformed: String?) {
        guard let text = virDomainGetXMLDesc(domain.pointer, 0) else {
            throw LibvirtError.last("virDomainGetXMLDesc(\(domain.uuid))")
        }
        defer { free(text) }
        do {
            var xml = try DomainXML(parsing: String(cString: text))
            xml.identifyDevices(domainName: domain.name, domainUUID: domain.uuid)
            return (xml, nil)
        } catch {
            return (DomainXML(), "\(error)")
        }
    }

    /// `virDomainGetInfo` for what the stats record lacked (cpu time, vCPUs, memory).
    static func readInfo(_ domain: LibvirtDomain, into snapshot: inout DomainSnapshot) throws(LibvirtError) {
        var info = virDomainInfo()
        guard virDomainGetInfo(domain.pointer, &info) == 0 else {
            throw LibvirtError.last("virDomainGetInfo(\(snapshot.name))")
        }
        snapshot.state = DomainState(rawValue: Int(info.state)) ?? snapshot.state
        snapshot.cpuTime = snapshot.cpuTime ?? UInt64(info.cpuTime)
        if snapshot.vcpuCount == 0 { snapshot.vcpuCount = Int(info.nrVirtCpu) }
        if snapshot.maxMemoryKiB == 0 { snapshot.maxMemoryKiB = UInt64(info.maxMem) }
        if snapshot.memoryKiB == 0 { snapshot.memoryKiB = UInt64(info.memory) }
    }

    /// `virDomainMemoryStats` into the snapshot's balloon figures; a driver without it leaves them as they are.
    static func readMemoryStats(_ domain: LibvirtDomain, into snapshot: inout DomainSnapshot) throws(LibvirtError) {
        let size = Int(VIR_DOMAIN_MEMORY_STAT_NR.rawValue)
        let stats = withUnsafeTemporaryAllocation(of: virDomainMemoryStatStruct.self, capacity: size) { buffer in
            let count = virDomainMemoryStats(domain.pointer, buffer.baseAddress, UInt32(size), 0)
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

    /// `virDomainBlockStats` and `virDomainGetBlockInfo` for each disk; `calls` counts the calls made.
    static func readDisks(_ domain: LibvirtDomain, _ names: [String], calls: inout Int)
        throws(LibvirtError) -> [DiskStats] {
        var disks: [DiskStats] = []
        for name in names {
            calls += 2
            var stats = virDomainBlockStatsStruct()
            let size = MemoryLayout<virDomainBlockStatsStruct>.size
            guard virDomainBlockStats(domain.pointer, name, &stats, size) == 0 else {
                let error = LibvirtError.last("virDomainBlockStats(\(name))")
                if error.isNoDomain { throw error }
                continue   // an empty CD-ROM drive or a disk without stats
            }
            var disk = DiskStats(name: name)
            disk.readBytes = counter(stats.rd_bytes)
            disk.readRequests = counter(stats.rd_req)
            disk.writeBytes = counter(stats.wr_bytes)
            disk.writeRequests = counter(stats.wr_req)
            disk.errors = counter(stats.errs)
            _ = readBlockInfo(domain, into: &disk)
            disks.append(disk)
        }
        return disks
    }

    /// `virDomainGetBlockInfo` for each disk, which works on a shut-off domain too (capacity, allocation, physical
    /// size); a disk that cannot be read is left out. `calls` counts the calls made.
    static func readBlockInfo(_ domain: LibvirtDomain, _ names: [String], calls: inout Int) -> [DiskStats] {
        names.compactMap { name in
            calls += 1
            var disk = DiskStats(name: name)
            return readBlockInfo(domain, into: &disk) ? disk : nil
        }
    }

    /// `virDomainGetBlockInfo` of `disk` into its sizes; false when libvirt could not read it.
    private static func readBlockInfo(_ domain: LibvirtDomain, into disk: inout DiskStats) -> Bool {
        var info = virDomainBlockInfo()
        guard virDomainGetBlockInfo(domain.pointer, disk.name, &info, 0) == 0 else { return false }
        disk.capacity = info.capacity
        disk.allocation = info.allocation
        disk.physical = info.physical
        return true
    }

    /// The `perf` group of one domain (`virDomainListGetStats` with `VIR_DOMAIN_STATS_PERF` only, NOWAIT: the group
    /// needs no domain job). Read per domain, and only for a domain whose XML enables perf events, rather than in the
    /// bulk call: a group joins the bulk call only once it was tried there against a stopped guest. Empty when libvirt
    /// returns nothing (the meters' unavailable-reason then says why).
    static func perf(_ domain: LibvirtDomain) -> PerfStats {
        var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
        var pointers: [virDomainPtr?] = [domain.pointer, nil]
        let count = virDomainListGetStats(&pointers, VIR_DOMAIN_STATS_PERF.rawValue, &records, nowait)
        guard count > 0, let records else { return PerfStats() }
        defer { virDomainStatsRecordListFree(records) }
        guard let record = records[0] else { return PerfStats() }
        return BulkStats(record.pointee.params, count: record.pointee.nparams).perf
    }

    /// `virDomainInterfaceStats` for each interface of the XML (which gives the vNIC's details); `calls` counts the
    /// calls made.
    static func readInterfaces(_ domain: LibvirtDomain, _ devices: [InterfaceStats],
                               calls: inout Int) throws(LibvirtError) -> [InterfaceStats] {
        var interfaces: [InterfaceStats] = []
        for var nic in devices {
            let device = nic.name
            calls += 1
            var stats = virDomainInterfaceStatsStruct()
            let size = MemoryLayout<virDomainInterfaceStatsStruct>.size
            guard virDomainInterfaceStats(domain.pointer, device, &stats, size) == 0 else {
                let error = LibvirtError.last("virDomainInterfaceStats(\(device))")
                if error.isNoDomain { throw error }
                continue
            }
            nic.rxBytes = counter(stats.rx_bytes)
            nic.rxPackets = counter(stats.rx_packets)
            nic.rxErrors = counter(stats.rx_errs)
            nic.rxDrop = counter(stats.rx_drop)
            nic.txBytes = counter(stats.tx_bytes)
            nic.txPackets = counter(stats.tx_packets)
            nic.txErrors = counter(stats.tx_errs)
            nic.txDrop = counter(stats.tx_drop)
            interfaces.append(nic)
        }
        return interfaces
    }
}

import CLibvirt
import Foundation
import Logging
import VirtMeterCore

/// The parts of the inspector that make virtmeter sample what ceilometer's compute agent samples: the inspection
/// options, shut-off domains (read with per-domain calls, as the bulk call covers active domains only) and the
/// `perf` group. Kept apart from the bulk read so each can change on its own. Everything here runs on the
/// inspector's queue.
extension LibvirtHypervisor {
    /// `snapshot` as the options want it: nil when it is to be skipped (no complete nova metadata, and the options
    /// say skip, as ceilometer does), the owners' names removed unless they are to be sent.
    func applyOptions(_ snapshot: DomainSnapshot) -> DomainSnapshot? {
        if options.domainsWithoutNova == .skip, snapshot.nova?.isComplete != true { return nil }
        guard !options.namesFromNova, snapshot.nova != nil else { return snapshot }
        var copy = snapshot
        copy.nova?.userName = nil
        copy.nova?.projectName = nil
        return copy
    }

    /// Appends the snapshots of the inactive (shut-off) domains: their state, vCPUs, memory and disk sizes when the
    /// options sample shut-off domains, else their metadata only (for `disk.root.size` and `disk.ephemeral.size`,
    /// which ceilometer reports for every domain it discovers). A domain that cannot be read is skipped.
    func readShutOffDomains(_ connection: LibvirtConnection, readAt: Double, into snapshots: inout [DomainSnapshot],
                            seen: inout Set<String>) {
        var list: UnsafeMutablePointer<virDomainPtr?>?
        let count = virConnectListAllDomains(connection.pointer, &list, VIR_CONNECT_LIST_DOMAINS_INACTIVE.rawValue)
        guard count >= 0, let list else {
            logger.debug("inactive domains not listed", metadata: ["error": "\(LibvirtError.last("list"))"])
            return
        }
        defer {
            for index in 0..<Int(count) { if let domain = list[index] { virDomainFree(domain) } }
            free(list)
        }
        for index in 0..<Int(count) {
            guard let domain = list[index] else { continue }
            do {
                let snapshot = try shutOffSnapshot(domain, readAt: readAt)
                seen.insert(snapshot.uuid)
                if let kept = applyOptions(snapshot) { snapshots.append(kept) }
            } catch {
                counters.skippedDomains += 1
                logger.debug("shut-off domain skipped this cycle", metadata: ["error": "\(error)"])
            }
        }
    }

    private func shutOffSnapshot(_ domain: virDomainPtr, readAt: Double) throws(LibvirtError) -> DomainSnapshot {
        let uuid = try uuidString(domain)
        let name = virDomainGetName(domain).map { String(cString: $0) } ?? uuid
        let xml = try domainXML(domain, uuid: uuid, readAt: readAt)
        var snapshot = DomainSnapshot(uuid: uuid, name: name, state: .shutoff, vcpuCount: 0, maxMemoryKiB: 0,
                                      memoryKiB: 0, nova: xml.nova, architecture: xml.architecture,
                                      osType: xml.osType, monotonicTime: readAt)
        guard options.sampleShutOffDomains else {
            snapshot.metadataOnly = true
            return snapshot
        }
        try readInfo(domain, into: &snapshot)
        snapshot.cpuTime = nil   // ceilometer reports no cpu for a shut-off domain
        snapshot.balloon.actual = snapshot.memoryKiB
        snapshot.disks = readBlockInfo(domain, xml.disks)
        return snapshot
    }

    /// The capacity, allocation and physical size of each disk (`virDomainGetBlockInfo`, which works on an inactive
    /// domain); a disk that cannot be read is left out.
    private func readBlockInfo(_ domain: virDomainPtr, _ names: [String]) -> [DiskStats] {
        names.compactMap { name in
            counters.perDomainCalls += 1
            var info = virDomainBlockInfo()
            guard virDomainGetBlockInfo(domain, name, &info, 0) == 0 else { return nil }
            var disk = DiskStats(name: name)
            disk.capacity = info.capacity
            disk.allocation = info.allocation
            disk.physical = info.physical
            return disk
        }
    }

    /// The `perf` group of one domain (`virDomainListGetStats` with `VIR_DOMAIN_STATS_PERF` only). Read per domain,
    /// and only for a domain whose XML enables perf events, rather than in the bulk call: a group joins the bulk call
    /// only once it was tried against a stopped guest with NOWAIT (DESIGN.md). Empty when libvirt returns nothing.
    func readPerf(_ domain: virDomainPtr) -> PerfStats {
        counters.perDomainCalls += 1
        var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
        var domains: [virDomainPtr?] = [domain, nil]
        let count = domains.withUnsafeMutableBufferPointer { buffer in
            virDomainListGetStats(buffer.baseAddress, VIR_DOMAIN_STATS_PERF.rawValue, &records, 0)
        }
        guard count > 0, let records else { return PerfStats() }
        defer { virDomainStatsRecordListFree(records) }
        guard let record = records[0] else { return PerfStats() }
        return BulkStats(record.pointee.params, count: record.pointee.nparams).perf
    }
}

extension DiskStats {
    /// The allocation as `virDomainGetBlockInfo` reports it, which is what ceilometer sends: the physical size for a
    /// qcow2 image file, or where libvirt has no highest written offset; else that offset (the bulk figure).
    mutating func alignAllocation(qcow2File: Bool) {
        if qcow2File || allocation == nil, let physical { allocation = physical }
    }
}

extension InterfaceStats {
    /// Takes the counters of `stats` (the same interface, read from libvirt), keeping this one's XML-side details.
    mutating func copyCounters(from stats: InterfaceStats) {
        rxBytes = stats.rxBytes
        rxPackets = stats.rxPackets
        rxErrors = stats.rxErrors
        rxDrop = stats.rxDrop
        txBytes = stats.txBytes
        txPackets = stats.txPackets
        txErrors = stats.txErrors
        txDrop = stats.txDrop
    }
}

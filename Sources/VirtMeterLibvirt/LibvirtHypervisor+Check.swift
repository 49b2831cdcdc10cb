import CLibvirt
import Foundation
import VirtMeterCore

/// A domain as `virtmeter check` reads it: its snapshot and libvirt's id for it, which changes when the domain
/// restarts (so a restart between two readings is seen, not mixed into one rate).
package struct IdentifiedSnapshot: Sendable {
    package let id: Int32
    package let snapshot: DomainSnapshot
}

/// One domain asked for by name or UUID: read, or why not.
package enum DomainLookup: Sendable {
    case read(IdentifiedSnapshot)
    /// No domain has that name or UUID.
    case noSuchDomain
    /// The domain exists but does not run (its state's name: `stopped`, `crashed`, ...).
    case notRunning(name: String, state: String)
    /// The domain could not be read (it vanished during the call, a libvirt error).
    case failed(String)
}

extension LibvirtHypervisor {
    /// Reads the domains named (each by name or UUID) with one `virDomainListGetStats` call. A missing, stopped or
    /// unreadable domain is reported as such; a failure of the connection itself throws `LibvirtError`.
    package func read(domains queries: [String]) async throws(LibvirtError) -> [DomainLookup] {
        try await queue.run { () throws(LibvirtError) in try self.readSelected(queries) }
    }

    /// Reads every active domain with its id (one `virConnectGetAllDomainStats` call). Throws `LibvirtError`.
    package func readActive() async throws(LibvirtError) -> [IdentifiedSnapshot] {
        try await queue.run { () throws(LibvirtError) in
            try self.readRecords(nil).compactMap {
                if case .read(let domain) = $0 { return domain } else { return nil }
            }
        }
    }

    /// Looks the queries up, then reads the domains found in one call; runs on `queue`.
    private func readSelected(_ queries: [String]) throws(LibvirtError) -> [DomainLookup] {
        let connection = try liveConnection()
        var found: [virDomainPtr?] = []
        var slots: [Int?] = []   // for each query, its index in `found`
        defer { for domain in found { virDomainFree(domain) } }
        for query in queries {
            var domain = virDomainLookupByName(connection.pointer, query)
            if domain == nil, UUID(uuidString: query) != nil {
                domain = virDomainLookupByUUIDString(connection.pointer, query)
            }
            guard let domain else {
                let error = LibvirtError.last("virDomainLookupByName(\(query))")
                guard error.isNoDomain else { throw error }
                slots.append(nil)
                continue
            }
            slots.append(found.count)
            found.append(domain)
        }
        let lookups = found.isEmpty ? [] : try readRecords(found)
        return slots.map { slot in slot.map { lookups[$0] } ?? .noSuchDomain }
    }

    /// Reads the CPU time again with the moment it was read, where the bulk record had none (libvirt's test
    /// driver): the per-domain calls made the snapshot's time (after the bulk call) too early for it, and a rate
    /// over a short interval needs both to match.
    private func retime(_ domain: virDomainPtr, _ snapshot: inout DomainSnapshot) throws(LibvirtError) {
        var info = virDomainInfo()
        guard virDomainGetInfo(domain, &info) == 0 else { throw LibvirtError.last("virDomainGetInfo") }
        snapshot.monotonicTime = SampleClock.monotonic()
        snapshot.cpuTime = UInt64(info.cpuTime)
    }

    /// Reads `domains` (nil: every active one) in one bulk call, in that order; runs on `queue`.
    private func readRecords(_ domains: [virDomainPtr?]?) throws(LibvirtError) -> [DomainLookup] {
        let connection = try liveConnection()
        var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
        let count: Int32
        if var list = domains {
            list.append(nil)
            count = virDomainListGetStats(&list, Self.groups, &records, 0)
        } else {
            count = virConnectGetAllDomainStats(connection.pointer, Self.groups, &records,
                                                VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE.rawValue)
        }
        guard count >= 0, let records else {
            throw LibvirtError.last(domains == nil ? "virConnectGetAllDomainStats(\(uri))" : "virDomainListGetStats")
        }
        defer { virDomainStatsRecordListFree(records) }
        let readAt = SampleClock.monotonic()
        var byUUID: [String: DomainLookup] = [:]
        var order: [String] = []
        for index in 0..<Int(count) {
            guard let record = records[index], let domain = record.pointee.dom else { continue }
            let bulk = BulkStats(record.pointee.params, count: record.pointee.nparams)
            let id = Int32(bitPattern: virDomainGetID(domain))
            let lookup: DomainLookup
            if let state = bulk.state, ![.running, .blocked, .paused, .pmSuspended].contains(state) {
                let name = virDomainGetName(domain).map { String(cString: $0) } ?? "?"
                lookup = .notRunning(name: name, state: state.word)
            } else {
                do {
                    var read = try snapshot(domain, bulk, readAt: readAt)
                    if bulk.cpuTime == nil { try retime(domain, &read) }
                    lookup = .read(IdentifiedSnapshot(id: id, snapshot: read))
                } catch {
                    lookup = .failed(error.description)
                }
            }
            guard let key = try? uuidString(domain) else { continue }
            byUUID[key] = lookup
            order.append(key)
        }
        guard let domains else { return order.compactMap { byUUID[$0] } }
        // Records come back in the order asked, but match them by UUID rather than rely on it.
        return domains.map { domain in
            guard let domain, let key = try? uuidString(domain) else { return .failed("libvirt gave no UUID for it") }
            return byUUID[key] ?? .failed("libvirt returned no statistics for it")
        }
    }
}

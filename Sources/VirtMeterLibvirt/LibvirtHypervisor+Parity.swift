import VirtMeterCore

/// The parts of the inspector that make virtmeter sample what ceilometer's compute agent samples and that make no
/// libvirt call of their own: the inspection options, and a shut-off domain's snapshot. (The calls, the shut-off
/// domains' listing, their info and disk sizes and the perf group, go through `DomainCalls` on the workers, with
/// deadlines, like every other call: see `LibvirtHypervisor.readAll`.)
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

    /// A shut-off domain's snapshot from its XML alone: metadata only (for `disk.root.size` and
    /// `disk.ephemeral.size`, which ceilometer reports for every domain it discovers) until its info and disk sizes
    /// are read into it, when the options sample shut-off domains.
    static func shutOffSnapshot(_ domain: LibvirtDomain, _ xml: DomainXML, readAt: Double) -> DomainSnapshot {
        var snapshot = DomainSnapshot(uuid: domain.uuid, name: domain.name, state: .shutoff, vcpuCount: 0,
                                      maxMemoryKiB: 0, memoryKiB: 0, nova: xml.nova, architecture: xml.architecture,
                                      osType: xml.osType, monotonicTime: readAt)
        snapshot.metadataOnly = true
        return snapshot
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

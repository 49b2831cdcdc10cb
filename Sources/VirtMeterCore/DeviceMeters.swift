/// A per-disk meter: one reading per disk, resource `<uuid>-<disk>`, with `disk_name` in the metadata.
/// What a device's samples carry besides their volume: the resource id and the keys its meters add to the domain's
/// resource_metadata. Built once where the domain's XML is read (`DomainXML.identifyDevices`) and shared by all the
/// device's readings, cycle after cycle: a class, so a reading holds a reference, and the stamper finds the
/// rendering it made for it by that reference.
package final class DeviceResource: Sendable, Equatable {
    package let id: String
    package let metadata: [(String, JSONValue)]

    /// A device's resource (`disk(_:domainUUID:)` and `interface(_:domainName:domainUUID:)` are ceilometer's).
    package init(id: String, metadata: [(String, JSONValue)]) {
        self.id = id
        self.metadata = metadata
    }

    /// A disk's, as ceilometer's: `<uuid>-<target>`, with `disk_name`.
    package static func disk(_ name: String, domainUUID: String) -> DeviceResource {
        DeviceResource(id: "\(domainUUID)-\(name)", metadata: [("disk_name", .string(name))])
    }

    /// A vNIC's, as ceilometer's: the filterref name, else `<name>-<uuid>-<device>`; its name, MAC, filterref,
    /// filter parameters (with the virtualport's interface id and the bridge) and vNIC name.
    package static func interface(_ interface: InterfaceStats, domainName: String, domainUUID: String)
        -> DeviceResource {
        var parameters = interface.filterParameters.filter { $0.name != "interfaceid" && $0.name != "bridge" }
            .map { ($0.name, JSONValue.string($0.text)) }
        parameters.append(("interfaceid", .string(interface.interfaceID)))
        parameters.append(("bridge", .string(interface.bridge)))
        let metadata: [(String, JSONValue)] = [
            ("name", .string(interface.name)), ("mac", .string(interface.mac)), ("fref", .string(interface.filterRef)),
            ("parameters", .object(parameters)), ("vnic_name", .string(interface.filterRef ?? interface.name)),
        ]
        return DeviceResource(id: interface.filterRef ?? "\(domainName)-\(domainUUID)-\(interface.name)",
                              metadata: metadata)
    }

    package static func == (lhs: DeviceResource, rhs: DeviceResource) -> Bool {
        lhs === rhs || (lhs.id == rhs.id && lhs.metadata.elementsEqual(rhs.metadata, by: { $0 == $1 }))
    }
}

package struct DiskMeter: Meter {
    package let devices = DeviceGroups.disks
    package let name: String
    package let type: SampleType
    package let unit: String
    package let summary: String
    package var isCeilometerMeter = true
    let counter: @Sendable (UnsafePointer<DiskStats>) -> UInt64?

    package func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void) {
        now.disks.forEachInPlace { disk in
            guard let value = counter(disk) else { return }
            body(Reading(.counter(value), device: disk.pointee.resource
                         ?? .disk(disk.pointee.name, domainUUID: now.uuid)))
        }
    }
}

/// The per-disk meters, with ceilometer's names.
package enum DiskMeters {
    package static let all: [any Meter] = [
        DiskMeter(name: "disk.device.read.bytes", type: .cumulative, unit: "B", summary: "bytes read from the disk",
                  counter: { $0.pointee.readBytes }),
        DiskMeter(name: "disk.device.read.requests", type: .cumulative, unit: "request",
                  summary: "read requests to the disk", counter: { $0.pointee.readRequests }),
        DiskMeter(name: "disk.device.write.bytes", type: .cumulative, unit: "B", summary: "bytes written to the disk",
                  counter: { $0.pointee.writeBytes }),
        DiskMeter(name: "disk.device.write.requests", type: .cumulative, unit: "request",
                  summary: "write requests to the disk", counter: { $0.pointee.writeRequests }),
        DiskMeter(name: "disk.device.read.latency", type: .cumulative, unit: "ns",
                  summary: "total time spent on reads from the disk", counter: { $0.pointee.readTimeNs }),
        DiskMeter(name: "disk.device.write.latency", type: .cumulative, unit: "ns",
                  summary: "total time spent on writes to the disk", counter: { $0.pointee.writeTimeNs }),
        DiskMeter(name: "disk.device.capacity", type: .gauge, unit: "B",
                  summary: "capacity of the disk (the larger of capacity and physical size, as ceilometer)",
                  counter: { disk in disk.pointee.capacity.map { max($0, disk.pointee.physical ?? 0) } }),
        DiskMeter(name: "disk.device.allocation", type: .gauge, unit: "B",
                  summary: "space allocated to the disk on the host", counter: { $0.pointee.allocation }),
        DiskMeter(name: "disk.device.usage", type: .gauge, unit: "B", summary: "physical size of the disk on the host",
                  counter: { $0.pointee.physical }),
        DiskMeter(name: "disk.device.flush.requests", type: .cumulative, unit: "request",
                  summary: "flush requests to the disk (block.N.fl.reqs)", isCeilometerMeter: false,
                  counter: { $0.pointee.flushRequests }),
        DiskMeter(name: "disk.device.flush.latency", type: .cumulative, unit: "ns",
                  summary: "total time spent on flushes of the disk (block.N.fl.times)", isCeilometerMeter: false,
                  counter: { $0.pointee.flushTimeNs }),
        DiskMeter(name: "disk.device.errors", type: .cumulative, unit: "error",
                  summary: "I/O errors of the disk, where the driver counts them (block.N.errors)",
                  isCeilometerMeter: false, counter: { $0.pointee.errors }),
    ]
}

/// A per-interface meter: resource `<domain name>-<uuid>-<tap>` (or the filterref's name where the vNIC has one), with
/// ceilometer's vNIC metadata (`name`, `mac`, `fref`, `parameters`, `vnic_name`). A delta meter reports the change
/// since the previous poll as ceilometer does: 0 on the first poll, the whole counter after a reset.
package struct NetworkMeter: Meter {
    package let devices = DeviceGroups.interfaces
    package let name: String
    package let type: SampleType
    package let unit: String
    package let summary: String
    let counter: @Sendable (UnsafePointer<InterfaceStats>) -> UInt64?

    package func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void) {
        now.interfaces.forEachInPlace { interface in
            guard var value = counter(interface) else { return }
            if type == .delta {
                // The same vNIC's counter in the previous poll: nil when it was not there or had no such counter.
                var before: UInt64?, found = false
                previous?.interfaces.forEachInPlace { old in
                    guard !found, old.pointee.name == interface.pointee.name else { return }
                    found = true
                    before = counter(old)
                }
                if let before, value >= before { value -= before } else if before == nil { value = 0 }
            }
            body(Reading(.counter(value), device: interface.pointee.resource
                         ?? .interface(interface.pointee, domainName: now.name, domainUUID: now.uuid)))
        }
    }
}

/// The per-interface meters, with ceilometer's names.
package enum NetworkMeters {
    package static let all: [any Meter] = [
        NetworkMeter(name: "network.incoming.bytes", type: .cumulative, unit: "B",
                     summary: "bytes received by the interface", counter: { $0.pointee.rxBytes }),
        NetworkMeter(name: "network.outgoing.bytes", type: .cumulative, unit: "B",
                     summary: "bytes sent by the interface", counter: { $0.pointee.txBytes }),
        NetworkMeter(name: "network.incoming.packets", type: .cumulative, unit: "packet",
                     summary: "packets received by the interface", counter: { $0.pointee.rxPackets }),
        NetworkMeter(name: "network.outgoing.packets", type: .cumulative, unit: "packet",
                     summary: "packets sent by the interface", counter: { $0.pointee.txPackets }),
        NetworkMeter(name: "network.incoming.packets.drop", type: .cumulative, unit: "packet",
                     summary: "received packets dropped", counter: { $0.pointee.rxDrop }),
        NetworkMeter(name: "network.outgoing.packets.drop", type: .cumulative, unit: "packet",
                     summary: "sent packets dropped", counter: { $0.pointee.txDrop }),
        NetworkMeter(name: "network.incoming.packets.error", type: .cumulative, unit: "packet",
                     summary: "receive errors", counter: { $0.pointee.rxErrors }),
        NetworkMeter(name: "network.outgoing.packets.error", type: .cumulative, unit: "packet",
                     summary: "send errors", counter: { $0.pointee.txErrors }),
        NetworkMeter(name: "network.incoming.bytes.delta", type: .delta, unit: "B",
                     summary: "bytes received since the previous poll", counter: { $0.pointee.rxBytes }),
        NetworkMeter(name: "network.outgoing.bytes.delta", type: .delta, unit: "B",
                     summary: "bytes sent since the previous poll", counter: { $0.pointee.txBytes }),
    ]
}

extension Array {
    /// Calls `body` with each element where it lies, in order. A device meter reads one counter of each device's
    /// stats, for every meter and domain: copying the stats out of the array would retain and release each of their
    /// strings every time.
    func forEachInPlace(_ body: (UnsafePointer<Element>) -> Void) {
        withUnsafeBufferPointer { elements in
            guard let first = elements.baseAddress else { return }
            for index in elements.indices { body(first + index) }
        }
    }
}

/// A meter turns a domain snapshot (and the previous one, for rates) into readings. Meters never call libvirt.
package protocol Meter: Sendable {
    /// Ceilometer's name, e.g. `memory.usage`.
    var name: String { get }
    var type: SampleType { get }
    var unit: String { get }
    /// One line for `virtmeter meters`.
    var summary: String { get }
    /// Calls `body` with each reading for `now`; `previous` is the same domain's snapshot from the last cycle, if any.
    /// A reading is lent to `body`, not made into an array: the stamper runs this for every meter of every domain.
    func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void)
    /// Why this meter cannot measure `snapshot` and how to fix it, or nil; logged once per domain.
    func unavailableReason(_ snapshot: DomainSnapshot) -> String?
    /// Whether ceilometer's compute agent has this meter (false: virtmeter's own, such as `cpu_util`).
    var isCeilometerMeter: Bool { get }
    /// The devices whose stats the meter reads: libvirt is asked for the disks' and the interfaces' stats only
    /// while a polled meter reads them. Both unless a meter says otherwise.
    var devices: DeviceGroups { get }
}

extension Meter {
    /// The readings for `now` (see `forEachReading`), as an array.
    package func readings(_ now: DomainSnapshot, previous: DomainSnapshot?) -> [Reading] {
        var readings: [Reading] = []
        forEachReading(now, previous: previous) { readings.append($0) }
        return readings
    }

    package func unavailableReason(_ snapshot: DomainSnapshot) -> String? { nil }
    package var isCeilometerMeter: Bool { true }
    package var devices: DeviceGroups { .all }
}

/// Kinds of devices whose stats a meter reads (`block.*` and `net.*` in libvirt's bulk stats).
package struct DeviceGroups: OptionSet, Sendable, Hashable {
    package let rawValue: Int
    package init(rawValue: Int) { self.rawValue = rawValue }

    package static let disks = DeviceGroups(rawValue: 1)
    package static let interfaces = DeviceGroups(rawValue: 2)
    package static let all: DeviceGroups = [.disks, .interfaces]
}

/// The built-in meters by name.
package struct MeterRegistry: Sendable {
    package let meters: [any Meter]

    package init(_ meters: [any Meter]) { self.meters = meters }

    /// Every meter virtmeter has.
    package static let builtIn = MeterRegistry(InstanceMeters.all + DiskMeters.all + NetworkMeters.all)

    package var names: [String] { meters.map(\.name) }

    /// The meter called `name`, if there is one.
    package func meter(named name: String) -> (any Meter)? { meters.first { $0.name == name } }

    /// The meters that `selector` admits, in registry order.
    package func select(_ selector: MeterSelector) -> [any Meter] { meters.filter { selector.admits($0.name) } }
}

/// A meter turns a domain snapshot (and the previous one, for rates) into readings. Meters never call libvirt.
public protocol Meter: Sendable {
    /// Ceilometer's name, e.g. `memory.usage`.
    var name: String { get }
    var type: SampleType { get }
    var unit: String { get }
    /// One line for `virtmeter meters`.
    var summary: String { get }
    /// The readings for `now`; `previous` is the same domain's snapshot from the last cycle, if any.
    func readings(_ now: DomainSnapshot, previous: DomainSnapshot?) -> [Reading]
    /// Why this meter cannot measure `snapshot` and how to fix it, or nil; logged once per domain.
    func unavailableReason(_ snapshot: DomainSnapshot) -> String?
    /// Whether ceilometer's compute agent has this meter (false: virtmeter's own, such as `cpu_util`).
    var isCeilometerMeter: Bool { get }
}

extension Meter {
    public func unavailableReason(_ snapshot: DomainSnapshot) -> String? { nil }
    public var isCeilometerMeter: Bool { true }
}

/// The built-in meters by name.
public struct MeterRegistry: Sendable {
    public let meters: [any Meter]

    public init(_ meters: [any Meter]) { self.meters = meters }

    /// Every meter virtmeter has.
    public static let builtIn = MeterRegistry(InstanceMeters.all + DiskMeters.all + NetworkMeters.all)

    public var names: [String] { meters.map(\.name) }

    /// The meter called `name`, if there is one.
    public func meter(named name: String) -> (any Meter)? { meters.first { $0.name == name } }

    /// The meters that `selector` admits, in registry order.
    public func select(_ selector: MeterSelector) -> [any Meter] { meters.filter { selector.admits($0.name) } }
}

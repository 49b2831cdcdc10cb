/// A meter as an operator declares it in YAML (`meters_dir`): a name, a type, a unit, a summary and a bulk-stats
/// field, with an optional sum or mean over `N`, a scale factor and a per-second rate.
package struct MeterDeclaration: Sendable, Equatable {
    /// How the values of an indexed field (`vcpu.N.delay`) become one value per domain.
    package enum Aggregate: String, Sendable, CaseIterable {
        case sum, mean
    }

    package var name: String
    package var type: SampleType
    package var unit: String
    package var summary: String
    package var field: FieldPattern
    package var aggregate: Aggregate?
    /// Factor applied to the value (or to the rate): `1/1024` turns KiB into MiB.
    package var scale: Double
    /// Whether the sample is the change per second since the previous poll (`cpu_util`'s rules).
    package var rate: Bool
    /// Where it was declared, `file:line`, for `virtmeter meters` and log lines.
    package var source: String

    package init(name: String, type: SampleType, unit: String, summary: String, field: FieldPattern,
                aggregate: Aggregate? = nil, scale: Double = 1, rate: Bool = false, source: String) {
        self.name = name
        self.type = type
        self.unit = unit
        self.summary = summary
        self.field = field
        self.aggregate = aggregate
        self.scale = scale
        self.rate = rate
        self.source = source
    }

    /// Whether the meter gives one sample per disk or interface (`block.N.*`, `net.N.*` without an aggregate).
    package var isPerDevice: Bool { field.isIndexed && aggregate == nil }
}

/// A declared meter: reads the values the inspector kept for its field (`DomainSnapshot.statsFields`) and makes
/// readings as the built-in meters do: per domain (resource: the uuid), or per disk (`<uuid>-<disk>`, `disk_name`)
/// or interface (`<name>-<uuid>-<tap>`, vNIC metadata). Rates and deltas follow `cpu_util`'s rules: measured Δt,
/// nothing on a domain's first poll or when the counter went backwards, and a rate in `%` clamped to [0, 100] per
/// value it sums (the counters and the clock are not read at the same instant).
package struct DeclaredMeter: Meter {
    package let declaration: MeterDeclaration

    package init(_ declaration: MeterDeclaration) { self.declaration = declaration }

    package var name: String { declaration.name }
    package var type: SampleType { declaration.type }
    package var unit: String { declaration.unit }
    package var summary: String { declaration.summary }
    package var devices: DeviceGroups {
        switch declaration.field.group {
        case "block": return .disks
        case "net": return .interfaces
        default: return []
        }
    }

    package func forEachReading(_ now: DomainSnapshot, previous: DomainSnapshot?, _ body: (Reading) -> Void) {
        declaredReadings(now, previous: previous).forEach(body)
    }

    private func declaredReadings(_ now: DomainSnapshot, previous: DomainSnapshot?) -> [Reading] {
        let field = declaration.field
        let current = now.statsFields.filter { $0.pattern.text == field.text }
        guard !current.isEmpty else { return [] }
        let before = previous?.statsFields.filter { $0.pattern.text == field.text }
        let elapsed = previous.map { now.monotonicTime - $0.monotonicTime } ?? 0
        guard declaration.isPerDevice else {
            let value = combine(current)
            guard let volume = transform(value, before.flatMap { $0.isEmpty ? nil : combine($0) }, elapsed)
            else { return [] }
            return [Reading(clamped(volume, values: declaration.aggregate == .sum ? current.count : 1))]
        }
        return current.compactMap { stat in
            guard let device = stat.device else { return nil }
            let earlier = before?.first { $0.index == stat.index && $0.device == device }?.value
            guard let volume = transform(stat.value, earlier, elapsed).map({ clamped($0, values: 1) }) else {
                return nil
            }
            if field.group == "net" {
                let metadata: [(String, JSONValue)] = [
                    ("name", .string(device)), ("mac", .string(now.interfaces.first { $0.name == device }?.mac)),
                    ("fref", .null), ("vnic_name", .string(device)),
                ]
                return Reading(volume,
                               device: DeviceResource(id: "\(now.name)-\(now.uuid)-\(device)", metadata: metadata))
            }
            return Reading(volume, device: DeviceResource(id: "\(now.uuid)-\(device)",
                                                          metadata: [("disk_name", .string(device))]))
        }
    }

    package func unavailableReason(_ snapshot: DomainSnapshot) -> String? {
        snapshot.statsFields.contains { $0.pattern.text == declaration.field.text } ? nil
            : "libvirt returned no \(declaration.field.text) for this domain (declared in \(declaration.source))"
    }

    /// A percentage rate within [0, 100] for each of the `values` it sums, as `cpu_util`; anything else as it is.
    private func clamped(_ volume: Volume, values: Int) -> Volume {
        guard declaration.rate, declaration.unit == "%" else { return volume }
        return .double(min(100 * Double(values), max(0, volume.doubleValue)))
    }

    /// The sum (or mean) of the values: integers stay integers where they can.
    private func combine(_ stats: [StatsField]) -> Volume {
        if stats.count == 1, declaration.aggregate != .mean { return stats[0].value }
        var integer: Int64 = 0
        var real = 0.0
        var allIntegers = true
        for stat in stats {
            real += stat.value.doubleValue
            if case .int(let value) = stat.value { integer &+= value } else { allIntegers = false }
        }
        if declaration.aggregate == .mean { return .double(real / Double(stats.count)) }
        return allIntegers ? .int(integer) : .double(real)
    }

    /// The sample's volume from the value now and the one of the previous poll: the change (delta), the change per
    /// second (rate), else the value itself; then scaled. Nil when a change is needed and there is none to take.
    private func transform(_ now: Volume, _ before: Volume?, _ elapsed: Double) -> Volume? {
        var volume = now
        if declaration.rate || declaration.type == .delta {
            guard let before, now.doubleValue >= before.doubleValue else { return nil }
            if case .int(let a) = now, case .int(let b) = before {
                volume = .int(a - b)
            } else {
                volume = .double(now.doubleValue - before.doubleValue)
            }
            if declaration.rate {
                guard elapsed > 0 else { return nil }
                volume = .double(volume.doubleValue / elapsed)
            }
        }
        return declaration.scale == 1 ? volume : .double(volume.doubleValue * declaration.scale)
    }
}

import Foundation
import VirtMeterCore

/// The meters declared in YAML in `meters_dir`: every `*.yaml` file there, in name order, holds a list `meters:` of
/// declarations over libvirt's bulk-stats fields. Every mistake is refused with one line naming the file, the line
/// and the key, before a meter runs: an unknown key, a bad type, a name taken by a built-in meter (or declared
/// twice), a field libvirt does not return, an aggregate or a rate that cannot apply.
package struct DeclaredMeters: Sendable {
    package let meters: [DeclaredMeter]

    package init(_ meters: [DeclaredMeter]) { self.meters = meters }

    /// The keys of a declaration.
    static let keys = ["name", "type", "unit", "summary", "field", "aggregate", "scale", "rate"]

    /// The built-in meters and these, as polling.yaml and `--meters` select them.
    package func registry(builtIn: MeterRegistry = .builtIn) -> MeterRegistry {
        MeterRegistry(builtIn.meters + meters)
    }

    /// Reads every `*.yaml` file of `directory` (in name order).
    package static func load(directory: String, builtIn: MeterRegistry = .builtIn) throws(ConfigError)
        -> DeclaredMeters {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw ConfigError(file: directory, key: "meters_dir", message: "cannot read the directory")
        }
        var meters: [DeclaredMeter] = []
        for name in names.sorted() where name.hasSuffix(".yaml") && !name.hasPrefix(".") {
            let file = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            meters = try parse(YAMLMapping.load(file: file), builtIn: builtIn, declared: meters)
        }
        return DeclaredMeters(meters)
    }

    /// Parses one file's `text` as if read from `file`.
    package static func parse(_ text: String, file: String, builtIn: MeterRegistry = .builtIn)
        throws(ConfigError) -> DeclaredMeters {
        DeclaredMeters(try parse(YAMLMapping.parse(text, file: file), builtIn: builtIn, declared: []))
    }

    /// The declarations of one file appended to `declared` (those of the files before it).
    static func parse(_ root: YAMLMapping, builtIn: MeterRegistry, declared: [DeclaredMeter])
        throws(ConfigError) -> [DeclaredMeter] {
        try root.rejectUnknownKeys(["meters"])
        var meters = declared
        for entry in try root.mappings("meters") ?? [] {
            let declaration = try declaration(entry, builtIn: builtIn, declared: meters)
            meters.append(DeclaredMeter(declaration))
        }
        return meters
    }

    static func declaration(_ entry: YAMLMapping, builtIn: MeterRegistry, declared: [DeclaredMeter])
        throws(ConfigError) -> MeterDeclaration {
        try entry.rejectUnknownKeys(keys)
        let name = try entry.requiredString("name")
        let allowed = name.unicodeScalars.allSatisfy { scalar in
            (scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)))
                || ".-_:".unicodeScalars.contains(scalar)
        }
        guard allowed else {
            throw entry.error("name", "'\(name)' may hold only letters, digits, '.', '-', '_' and ':'")
        }
        if builtIn.meter(named: name) != nil {
            throw entry.error("name", "'\(name)' is a built-in meter: choose another name")
        }
        if let other = declared.first(where: { $0.name == name }) {
            throw entry.error("name", "'\(name)' is already declared at \(other.declaration.source)")
        }
        let typeName = try entry.requiredString("type")
        guard let type = SampleType(rawValue: typeName) else {
            throw entry.error("type", "unknown type '\(typeName)' (known: gauge, cumulative, delta)")
        }
        guard let unit = try entry.string("unit") else { throw entry.error("unit", "required value is missing") }
        let summary = try entry.requiredString("summary")
        guard !summary.contains(where: \.isNewline) else { throw entry.error("summary", "must be one line") }
        let field = try self.field(entry)
        var aggregate: MeterDeclaration.Aggregate?
        if let text = try entry.string("aggregate") {
            guard let parsed = MeterDeclaration.Aggregate(rawValue: text) else {
                throw entry.error("aggregate", "unknown aggregate '\(text)' (known: sum, mean)")
            }
            guard field.isIndexed else {
                throw entry.error("aggregate", "aggregates over N, and field '\(field)' has no N")
            }
            aggregate = parsed
        }
        if field.isIndexed, aggregate == nil, field.group != "block", field.group != "net" {
            throw entry.error("field", "'\(field)' gives one value per \(field.group) index and only disks "
                              + "(block.N) and interfaces (net.N) have resource ids: add aggregate: sum or mean")
        }
        let scale = try self.scale(entry)
        let rate = try entry.bool("rate") ?? false
        if rate, type != .gauge {
            throw entry.error("rate", "a rate (per second since the previous poll) is a gauge: set type: gauge")
        }
        return MeterDeclaration(name: name, type: type, unit: unit, summary: summary, field: field,
                                aggregate: aggregate, scale: scale, rate: rate,
                                source: "\(entry.file):\(entry.node.mark?.line ?? 0)")
    }

    /// The field, checked against what libvirt's bulk stats return (`StatsCatalog`).
    static func field(_ entry: YAMLMapping) throws(ConfigError) -> FieldPattern {
        let text = try entry.requiredString("field")
        guard let field = FieldPattern(text) else {
            throw entry.error("field", "'\(text)' is not a stats field (names separated by dots, at most one N)")
        }
        // A literal index (vcpu.0.delay) is checked as its N form.
        let general = text.split(separator: ".").map { $0.allSatisfy(\.isNumber) ? "N" : String($0) }
            .joined(separator: ".")
        if StatsCatalog.textFields.contains(general) {
            throw entry.error("field", "'\(text)' is a name, not a number")
        }
        guard StatsCatalog.knows(general) else {
            let known = StatsCatalog.fields[field.group].map { "\(field.group) fields: " + $0.joined(separator: ", ") }
                ?? "groups: " + StatsCatalog.fields.keys.sorted().joined(separator: ", ")
            throw entry.error("field", "'\(text)' matches no field libvirt returns for any domain (\(known))")
        }
        return field
    }

    /// `scale`: a number or a fraction (`1/1024`), finite and not 0.
    static func scale(_ entry: YAMLMapping) throws(ConfigError) -> Double {
        guard let text = try entry.string("scale") else { return 1 }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            .map { Double($0.trimmingCharacters(in: .whitespaces)) }
        let value: Double?
        switch parts.count {
        case 1: value = parts[0]
        case 2: value = parts[0].flatMap { a in parts[1].map { a / $0 } }
        default: value = nil
        }
        guard let value, value.isFinite else {
            throw entry.error("scale", "expected a number or a fraction such as 1/1024, got '\(text)'")
        }
        guard value != 0 else { throw entry.error("scale", "must not be 0") }
        return value
    }
}

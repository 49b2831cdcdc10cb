import VirtMeterCore

/// One source of polling.yaml: a name, an interval and the meters it polls.
package struct PollingSource: Sendable {
    package let name: String
    /// Seconds between two cycles of this source.
    package let interval: Double
    /// The intervals a source (or `virtmeter poll --interval`) may have, in seconds: a millisecond to a year.
    package static let intervalRange: ClosedRange<Double> = 0.001...31_536_000
    package let selector: MeterSelector
    /// The registry's meters this source admits (none when it names only meters virtmeter lacks).
    package let meters: [any Meter]

    package init(name: String, interval: Double, selector: MeterSelector, registry: MeterRegistry = .builtIn) {
        self.name = name
        self.interval = interval
        self.selector = selector
        self.meters = registry.select(selector)
    }

    /// The source as the poller's group.
    package var group: PollingGroup { PollingGroup(name: name, meters: meters) }
}

/// polling.yaml in Ceilometer's format: `sources`, each with `name`, `interval` and `meters` (wildcards, `!`
/// exclusions, ceilometer's mixing rules). A ceilometer polling.yaml loads unchanged: meters virtmeter does not have,
/// and the keys it does not use (`resources`, `discovery`), are reported as warnings, not errors.
package struct PollingConfiguration: Sendable {
    package let sources: [PollingSource]
    /// Things worth one warning at start-up (unknown meters, ignored keys).
    package let warnings: [String]

    /// Ceilometer's default interval for a source without one.
    package static let defaultInterval = 600.0

    /// What virtmeter polls with no polling.yaml at all: every meter every 300 s.
    package static let builtInDefault = builtInDefault(registry: .builtIn)

    /// The built-in default over `registry`'s meters (declared meters included).
    package static func builtInDefault(registry: MeterRegistry) -> PollingConfiguration {
        PollingConfiguration(
            sources: [PollingSource(name: "all_pollsters", interval: 300, selector: .all, registry: registry)],
            warnings: [])
    }

    package init(sources: [PollingSource], warnings: [String]) {
        self.sources = sources
        self.warnings = warnings
    }

    /// Reads polling.yaml from `file`. Throws `ConfigError` naming the file, line and key.
    package static func load(file: String, registry: MeterRegistry = .builtIn)
        throws(ConfigError) -> PollingConfiguration {
        try parse(YAMLMapping.load(file: file), registry: registry)
    }

    /// Parses polling.yaml's `text` as if read from `file`.
    package static func parse(_ text: String, file: String, registry: MeterRegistry = .builtIn)
        throws(ConfigError) -> PollingConfiguration {
        try parse(YAMLMapping.parse(text, file: file), registry: registry)
    }

    static func parse(_ root: YAMLMapping, registry: MeterRegistry) throws(ConfigError) -> PollingConfiguration {
        var warnings = root.unknownKeys(["sources"]).map { "\(root.file): key '\($0)' is not used by virtmeter" }
        guard let entries = try root.mappings("sources"), !entries.isEmpty else {
            throw root.error("sources", "at least one source is required")
        }
        var sources: [PollingSource] = []
        var unknownMeters: [String] = []
        for entry in entries {
            for key in entry.unknownKeys(["name", "interval", "meters", "resources", "discovery"]) {
                warnings.append("\(entry.file): \(entry.keyPath(key)) is not a polling source key; ignored")
            }
            for key in ["resources", "discovery"] where entry.value(key) != nil {
                warnings.append("\(entry.file): \(entry.keyPath(key)) is ignored: virtmeter discovers the domains "
                                + "of its libvirt connection")
            }
            let name = try entry.requiredString("name")
            guard !sources.contains(where: { $0.name == name }) else {
                throw entry.error("name", "duplicated source name '\(name)'")
            }
            let interval = try entry.double("interval", range: PollingSource.intervalRange) ?? defaultInterval
            guard let patterns = try entry.strings("meters"), !patterns.isEmpty else {
                throw entry.error("meters", "a source needs at least one meter")
            }
            let selector: MeterSelector
            do {
                selector = try MeterSelector(patterns)
            } catch {
                throw entry.error("meters", "\(error)")
            }
            unknownMeters += selector.unmatched(among: registry.names).filter { !unknownMeters.contains($0) }
            sources.append(PollingSource(name: name, interval: interval, selector: selector, registry: registry))
        }
        if !unknownMeters.isEmpty {
            warnings.append("\(root.file): meters virtmeter does not have are not polled: "
                            + unknownMeters.joined(separator: ", "))
        }
        return PollingConfiguration(sources: sources, warnings: warnings)
    }
}

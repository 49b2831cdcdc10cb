import Synchronization
import VirtMeterCore

/// The text that ceilometer's Prometheus exporter serves (`ceilometer/polling/prom_exporter.py`, ceilometer 25 and
/// later, rendered by prometheus_client's `generate_latest`), for samples: one gauge family per meter,
/// `ceilometer_<counter_name with dots as underscores>`, with `_gen_labels`'s labels written sorted by name as
/// prometheus_client writes them, and prometheus_client's number format (`1.073741824e+09`). The same label set
/// twice in a family keeps the last value, as `Gauge.labels(...).set()` does.
///
/// One difference, where ceilometer fails: prometheus_client refuses a sample whose label names differ in number
/// from the first sample of its family (a domain without nova metadata beside nova's instances); here each series
/// keeps its own labels, which Prometheus accepts.
package enum CeilometerFormat {
    /// `ceilometer_` and the counter name with dots as underscores.
    package static func metricName(_ counterName: String) -> String {
        "ceilometer_" + counterName.replacing(".", with: "_")
    }

    /// `_gen_labels` up to `resource`: the plugin label, publisher, type, counter, project, project_name, user,
    /// user_name, unit and resource, each optional one present when its value is not empty.
    package static func sampleLabels(name: String, resourceID: String, projectID: String?, projectName: String?,
                                    userID: String?, userName: String?, unit: String) -> [(String, String)] {
        let shards = name.split(separator: ".", omittingEmptySubsequences: false)
        var labels: [(String, String)] = []
        labels.reserveCapacity(16)
        labels.append((String(shards[0]), shards.count > 2 ? String(shards[2]) : resourceID))
        labels.append(("publisher", "ceilometer"))
        labels.append(("type", String(shards.count > 1 ? shards[1] : shards[0])))
        func add(_ key: String, _ value: String?) {
            if let value, !value.isEmpty { labels.append((key, value)) }
        }
        add("counter", name)
        add("project", projectID)
        add("project_name", projectName)
        add("user", userID)
        add("user_name", userName)
        add("unit", unit)
        add("resource", resourceID)
        return labels
    }

    /// `_gen_labels` from `resource_metadata` on (when it is not empty): vm_instance, resource_name, server_group
    /// (`none` when absent), state, the load balancer's and volume service's labels, flavor_id and flavor_name.
    package static func metadataLabels(_ metadata: [(String, JSONValue)], counterName: String) -> [(String, String)] {
        func get(_ key: String) -> JSONValue? { metadata.first { $0.0 == key }?.1 }
        var labels: [(String, String)] = []
        labels.reserveCapacity(6)
        if let host = get("host"), host.isTruthy { labels.append(("vm_instance", host.pythonStr)) }
        let name = get("name")
        if let display = get("display_name"), display.isTruthy {
            var value = display.pythonStr
            if let name, name.isTruthy { value += ":" + name.pythonStr }
            labels.append(("resource_name", value))
        } else if let name, name.isTruthy {
            labels.append(("resource_name", name.pythonStr))
        }
        let group = get("user_metadata")?["server_group"]
        labels.append(("server_group", group.map { $0.isTruthy } == true ? group!.pythonStr : "none"))
        if let state = get("alarm_state"), state != .string("") { labels.append(("state", state.pythonStr)) }
        if counterName.hasPrefix("loadbalancer") {
            let zone = get("availability_zone")
            labels.append(("availability_zone", zone.map { $0.isTruthy } == true ? zone!.pythonStr : ""))
        }
        if counterName == "volume.service.health" {
            for key in ["binary", "zone", "status"] {
                let value = get(key)
                labels.append((key, value.map { $0.isTruthy } == true ? value!.pythonStr : ""))
            }
        }
        if let flavor = get("flavor"), flavor.isTruthy {
            if let id = flavor["id"], id.isTruthy { labels.append(("flavor_id", id.pythonStr)) }
            if let name = flavor["name"], name.isTruthy { labels.append(("flavor_name", name.pythonStr)) }
        }
        return labels
    }

    /// All of `_gen_labels` for `sample`, in its order.
    package static func labels(_ sample: Sample) -> [(String, String)] {
        var labels = sampleLabels(name: sample.name, resourceID: sample.resourceID, projectID: sample.projectID,
                                  projectName: sample.projectName, userID: sample.userID, userName: sample.userName,
                                  unit: sample.unit)
        if case .object(let metadata) = sample.resourceMetadata, !metadata.isEmpty {
            labels += metadataLabels(metadata, counterName: sample.name)
        }
        return labels
    }

    /// The `{name="value",...}` of a series line: sorted by name, values escaped (backslash, newline, quote).
    package static func labelBlock(_ labels: [(String, String)]) -> String {
        var out = "{"
        for (index, (key, value)) in labels.sorted(by: { $0.0 < $1.0 }).enumerated() {
            if index > 0 { out += "," }
            out += key
            out += "=\""
            if value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\n")
                || $0 == UInt8(ascii: "\"") }) {
                for character in value.unicodeScalars {
                    switch character {
                    case "\\": out += "\\\\"
                    case "\n": out += "\\n"
                    case "\"": out += "\\\""
                    default: out.unicodeScalars.append(character)
                    }
                }
            } else {
                out += value
            }
            out += "\""
        }
        return out + "}"
    }

    /// prometheus_client's `floatToGoString`: Python's repr, with an exponent from 1e7 up (`1.5e+07`).
    package static func value(_ number: Double) -> String {
        if number.isNaN { return "NaN" }
        if number.isInfinite { return number < 0 ? "-Inf" : "+Inf" }
        let repr = PythonRepr.float(number)
        guard number > 0, let dot = repr.firstIndex(of: ".") else { return repr }
        let position = repr.distance(from: repr.startIndex, to: dot)
        guard position > 6 else { return repr }
        var mantissa = String(repr.first!) + "." + repr[repr.index(after: repr.startIndex)..<dot]
            + repr[repr.index(after: dot)...]
        while let last = mantissa.last, last == "0" || last == "." { mantissa.removeLast() }
        let exponent = position - 1
        return mantissa + "e+" + (exponent < 10 ? "0" : "") + String(exponent)
    }

    /// One series: a family name, its label block and its value.
    package struct Series: Sendable {
        package var metric: String
        package var labels: String
        package var value: Double

        package init(metric: String, labels: String, value: Double) {
            self.metric = metric
            self.labels = labels
            self.value = value
        }

        /// The series of `sample`.
        package init(_ sample: Sample) {
            self.init(metric: CeilometerFormat.metricName(sample.name),
                      labels: CeilometerFormat.labelBlock(CeilometerFormat.labels(sample)),
                      value: sample.volume.doubleValue)
        }
    }

    /// The exposition of `series` as `generate_latest` writes a registry fed them in this order: families in the
    /// order they first appear, each with `# HELP` (empty) and `# TYPE ... gauge`, its series in the order they first
    /// appear, the last value of a repeated label set.
    package static func render(_ series: [Series]) -> [UInt8] {
        var families: [(name: String, series: [(labels: String, value: Double)], index: [String: Int])] = []
        var familyIndex: [String: Int] = [:]
        var bytes = 0
        for item in series {
            let family: Int
            if let known = familyIndex[item.metric] {
                family = known
            } else {
                family = families.count
                familyIndex[item.metric] = family
                families.append((item.metric, [], [:]))
            }
            if let known = families[family].index[item.labels] {
                families[family].series[known].value = item.value
                continue
            } else {
                families[family].index[item.labels] = families[family].series.count
                families[family].series.append((item.labels, item.value))
            }
            bytes += item.metric.utf8.count + item.labels.utf8.count + 24
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes + families.count * 64)
        for family in families {
            out += "# HELP \(family.name) \n# TYPE \(family.name) gauge\n".utf8
            for (labels, value) in family.series {
                out += family.name.utf8
                out += labels.utf8
                out.append(UInt8(ascii: " "))
                out += Self.value(value).utf8
                out.append(UInt8(ascii: "\n"))
            }
        }
        return out
    }
}

extension JSONValue {
    /// Python's truth value of the value (`if value:`).
    var isTruthy: Bool {
        switch self {
        case .null: return false
        case .bool(let value): return value
        case .int(let value): return value != 0
        case .double(let value): return value != 0
        case .string(let value): return !value.isEmpty
        case .array(let values): return !values.isEmpty
        case .object(let pairs): return !pairs.isEmpty
        }
    }

    /// Python's `str()` of the value, as prometheus_client turns a label value into text.
    var pythonStr: String {
        if case .string(let value) = self { return value }
        return PythonRepr.str(self)
    }
}

/// The latest samples of every polling source in ceilometer's exporter format, for `GET /metrics`: built from the
/// domain snapshots of each cycle after it completed (the readings the Poller turned into the published samples,
/// with the same resource_metadata), and swapped in whole, so a scrape reads the last complete exposition and
/// never waits for a cycle. A source's series are those of its last cycle only: a domain gone is gone from the
/// next exposition. Exists only when the endpoint is configured: without it the poll loop does none of this.
///
/// Each series line is written as bytes straight into its family's buffer: its `name{labels} ` part is made once per
/// domain, meter and resource and kept while the domain's metadata stays the same, so a cycle appends those bytes
/// and the number.
package final class CeilometerExposition: Sendable {
    private struct PrefixKey: Hashable {
        var meter: String
        var resource: String
    }

    private struct Domain {
        var key: SampleStamper.MetadataKey
        var metadata: [(String, JSONValue)]
        var labels: [(String, String)]
        /// `name{labels} ` of each series made so far: the same every cycle while the metadata stays.
        var prefixes: [PrefixKey: [UInt8]] = [:]
    }

    /// One family's series lines.
    private struct Family {
        var metric: String
        var lines: [UInt8]
    }

    private struct State {
        /// Per source, the snapshots its last cycle read (for rates and deltas, as the Poller keeps them).
        var previous: [String: [String: DomainSnapshot]] = [:]
        /// Per source, in the order sources were first polled, its last cycle's families in the order they first
        /// appeared.
        var families: [(source: String, families: [Family])] = []
        /// Each domain's resource_metadata and the labels made of it, until what it is built from changes.
        var domains: [String: Domain] = [:]
    }

    private let stamper: SampleStamper
    private let state = Mutex(State())
    private let snapshots = Mutex<[DomainSnapshot]>([])
    /// The exposition: family headers and series lines, one after the other.
    private let chunks = Mutex<[[UInt8]]>([])
    /// Metadata keys that `metadataLabels` reads: a meter's extra metadata with none of these keeps the domain's
    /// labels.
    private static let labelledKeys: Set<String> = ["host", "display_name", "name", "user_metadata", "alarm_state",
                                                    "availability_zone", "binary", "zone", "status", "flavor"]

    /// Series are stamped as `stamper` stamps samples (its host, in resource_metadata).
    package init(stamper: SampleStamper) {
        self.stamper = stamper
    }

    /// The latest exposition in parts to be written one after the other (none before the first cycle).
    package var currentChunks: [[UInt8]] { chunks.withLock { $0 } }

    /// The latest exposition (empty before the first cycle).
    package var current: [UInt8] { Array(currentChunks.joined()) }

    /// `hypervisor`, with each poll's snapshots kept for `cycleCompleted`.
    package func observing(_ hypervisor: any Hypervisor) -> any Hypervisor {
        Tap(base: hypervisor, snapshots: self)
    }

    private struct Tap: Hypervisor {
        let base: any Hypervisor
        let snapshots: CeilometerExposition

        func poll() async throws -> [DomainSnapshot] {
            let read = try await base.poll()
            snapshots.snapshots.withLock { $0 = read }
            return read
        }
    }

    /// After a cycle of `groups` completed: their series from the snapshots that cycle read, replacing theirs.
    package func cycleCompleted(_ groups: [PollingGroup]) {
        let read = snapshots.withLock { value in
            defer { value = [] }
            return value
        }
        let rendered = state.withLock { state -> [[UInt8]] in
            var seen: [String: DomainSnapshot] = [:]
            seen.reserveCapacity(read.count)
            var domains: [String: Domain] = [:]
            domains.reserveCapacity(read.count)
            for snapshot in read {
                seen[snapshot.uuid] = snapshot
                let key = SampleStamper.MetadataKey(snapshot)
                if let known = state.domains[snapshot.uuid], known.key == key {
                    domains[snapshot.uuid] = known
                } else {
                    let metadata = stamper.baseMetadata(snapshot)
                    domains[snapshot.uuid] = Domain(key: key, metadata: metadata,
                                                    labels: CeilometerFormat.metadataLabels(metadata, counterName: ""))
                }
            }
            for group in groups {
                let index = state.families.firstIndex { $0.source == group.name }
                let built = self.families(of: group, read: read, previous: state.previous[group.name],
                                          domains: &domains, hint: index.map { state.families[$0].families } ?? [])
                state.previous[group.name] = seen
                if let index {
                    state.families[index].families = built
                } else {
                    state.families.append((group.name, built))
                }
            }
            state.domains = domains
            return Self.chunks(state.families.map(\.families))
        }
        chunks.withLock { $0 = rendered }
    }

    /// Forgets the sources not in `names` (removed by a reload of polling.yaml).
    package func keepSources(_ names: Set<String>) {
        state.withLock { state in
            state.previous = state.previous.filter { names.contains($0.key) }
            state.families.removeAll { !names.contains($0.source) }
        }
    }

    /// One source's families: the series lines of its meters over the snapshots `read`, each family's buffer sized
    /// by its size in `hint` (the source's last cycle).
    private func families(of group: PollingGroup, read: [DomainSnapshot], previous: [String: DomainSnapshot]?,
                          domains: inout [String: Domain], hint: [Family]) -> [Family] {
        let meters = group.meters
        var families = meters.map { Family(metric: CeilometerFormat.metricName($0.name), lines: []) }
        var order: [Int] = []
        for (index, family) in families.enumerated() {
            families[index].lines.reserveCapacity(hint.first { $0.metric == family.metric }?.lines.count ?? 0)
        }
        for snapshot in read where domains[snapshot.uuid] != nil {
            let before = previous?[snapshot.uuid]
            for (index, meter) in meters.enumerated() {
                meter.forEachReading(snapshot, previous: before) { reading in
                    // The encoder refuses what it cannot write (NaN, infinite): such a sample is never published.
                    let value = reading.volume.doubleValue
                    guard value.isFinite else { return }
                    if families[index].lines.isEmpty { order.append(index) }
                    families[index].lines += prefix(snapshot, meter: meter, reading: reading,
                                                    metric: families[index].metric,
                                                    domain: &domains[snapshot.uuid]!)
                    families[index].lines += CeilometerFormat.value(value).utf8
                    families[index].lines.append(UInt8(ascii: "\n"))
                }
            }
        }
        return order.map { families[$0] }
    }

    /// The `name{labels} ` of `reading`'s series, from the domain's cache when its extra metadata changes no label.
    private func prefix(_ snapshot: DomainSnapshot, meter: any Meter, reading: Reading, metric: String,
                        domain: inout Domain) -> [UInt8] {
        let resourceID = reading.resourceID ?? snapshot.uuid
        let plain = reading.metadata.isEmpty
            || (!reading.metadata.contains { Self.labelledKeys.contains($0.0) }
                && !meter.name.hasPrefix("loadbalancer") && meter.name != "volume.service.health")
        let key = PrefixKey(meter: meter.name, resource: resourceID)
        if plain, let known = domain.prefixes[key] { return known }
        var labels = CeilometerFormat.sampleLabels(
            name: meter.name, resourceID: resourceID, projectID: snapshot.nova?.projectID,
            projectName: snapshot.nova?.projectName, userID: snapshot.nova?.userID, userName: snapshot.nova?.userName,
            unit: meter.unit)
        if plain {
            labels += domain.labels
        } else {
            var merged = domain.metadata
            for (key, value) in reading.metadata {
                if let index = merged.firstIndex(where: { $0.0 == key }) {
                    merged[index].1 = value
                } else {
                    merged.append((key, value))
                }
            }
            labels += CeilometerFormat.metadataLabels(merged, counterName: meter.name)
        }
        let prefix = Array((metric + CeilometerFormat.labelBlock(labels) + " ").utf8)
        if plain { domain.prefixes[key] = prefix }
        return prefix
    }

    /// The exposition of the sources' families: each family once, in the order families first appear, under its
    /// `# HELP` and `# TYPE`. A family in several sources (two sources polling the same meter) has its series
    /// merged: a label set in both keeps its first place and the later source's value, as prometheus_client does.
    private static func chunks(_ sources: [[Family]]) -> [[UInt8]] {
        var merged: [Family] = []
        var index: [String: Int] = [:]
        var repeated = false
        for family in sources.joined() {
            if let known = index[family.metric] {
                merged[known].lines += family.lines
                repeated = true
            } else {
                index[family.metric] = merged.count
                merged.append(family)
            }
        }
        var chunks: [[UInt8]] = []
        chunks.reserveCapacity(merged.count * 2)
        for var family in merged {
            if repeated { family.lines = lastValues(family.lines) }
            chunks.append(Array("# HELP \(family.metric) \n# TYPE \(family.metric) gauge\n".utf8))
            chunks.append(family.lines)
        }
        return chunks
    }

    /// Series lines with each label set once, where it first appeared, with its last value.
    private static func lastValues(_ lines: [UInt8]) -> [UInt8] {
        var series: [(prefix: ArraySlice<UInt8>, value: ArraySlice<UInt8>)] = []
        var position: [ArraySlice<UInt8>: Int] = [:]
        for line in lines.split(separator: UInt8(ascii: "\n")) {
            let space = line.lastIndex(of: UInt8(ascii: " ")) ?? line.endIndex
            let prefix = line[..<space], value = line[space...]
            if let known = position[prefix] {
                series[known].value = value
            } else {
                position[prefix] = series.count
                series.append((prefix, value))
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(lines.count)
        for (prefix, value) in series {
            out += prefix
            out += value
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }
}

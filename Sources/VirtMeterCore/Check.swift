#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The pure part of `virtmeter check`, the Nagios/Icinga plugin: threshold ranges, states, values from snapshots,
// and the one output line, all in the Monitoring Plugins development guidelines' terms
// (https://www.monitoring-plugins.org/doc/guidelines.html). libvirt is read by the command, not here.

/// A plugin state and its exit code.
package enum CheckState: Int32, Sendable, CaseIterable {
    case ok = 0, warning = 1, critical = 2, unknown = 3

    /// The word in the output line (`OK`, `WARNING`, `CRITICAL`, `UNKNOWN`).
    package var word: String {
        switch self {
        case .ok: return "OK"
        case .warning: return "WARNING"
        case .critical: return "CRITICAL"
        case .unknown: return "UNKNOWN"
        }
    }

    /// Severity for combining results: CRITICAL > WARNING > UNKNOWN > OK (the Monitoring Plugins' `max_state_alt`).
    package var severity: Int {
        switch self {
        case .ok: return 0
        case .unknown: return 1
        case .warning: return 2
        case .critical: return 3
        }
    }

    /// The worst of `states` by severity; OK for none.
    package static func worst(_ states: some Sequence<CheckState>) -> CheckState {
        states.max { $0.severity < $1.severity } ?? .ok
    }
}

/// A bad argument to the check: one line that names the argument.
package struct CheckArgumentError: Error, CustomStringConvertible, Sendable, Equatable {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// A threshold range in the guidelines' syntax `[@]start:end`: `10` (alert outside 0..10), `10:` (below 10),
/// `~:10` (above 10), `10:20` (outside 10..20), `@10:20` (inside 10..20, endpoints included). `start` defaults to
/// 0 and `~` means negative infinity; a missing `end` means positive infinity.
package struct ThresholdRange: Sendable, Equatable, CustomStringConvertible {
    package let start: Double
    package let end: Double
    /// `@`: alert inside the range instead of outside it.
    package let alertsInside: Bool
    /// The range as given, for the perfdata's warn and crit fields.
    package let description: String

    /// Parses `text`; throws `CheckArgumentError` naming `option` for anything else.
    package init(parsing text: String, option: String = "range") throws(CheckArgumentError) {
        func bad(_ why: String) -> CheckArgumentError {
            CheckArgumentError("\(option): '\(text)' is not a threshold range (\(why)); "
                               + "forms: 10, 10:, ~:10, 10:20, @10:20")
        }
        var body = Substring(text)
        alertsInside = body.first == "@"
        if alertsInside { body.removeFirst() }
        let parts = body.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let startText = parts.count == 2 ? parts[0] : "0"
        let endText = parts.count == 2 ? parts[1] : parts[0]
        guard !body.isEmpty, !(parts.count == 2 && startText.isEmpty) else { throw bad("no start before ':'") }
        if startText == "~" {
            start = -.infinity
        } else if let value = Self.number(startText) {
            start = value
        } else {
            throw bad("start '\(startText)' is not a number or ~")
        }
        if parts.count == 2, endText.isEmpty {
            end = .infinity
        } else if let value = Self.number(endText) {
            end = value
        } else {
            throw bad("end '\(endText)' is not a number")
        }
        guard start <= end else { throw bad("start is greater than end") }
        description = text
    }

    /// A plain decimal number (`-1.5`, `10`, `.5`); no exponents, no infinities, no hex.
    private static func number(_ text: Substring) -> Double? {
        let digits = text.first == "-" || text.first == "+" ? text.dropFirst() : text
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              digits.filter({ $0 == "." }).count <= 1, digits != "."
        else { return nil }
        return Double(text)
    }

    /// Whether `value` raises an alert: outside [start, end] (endpoints do not alert), or inside it with `@`.
    package func alerts(_ value: Double) -> Bool {
        let inside = value >= start && value <= end
        return alertsInside ? inside : !inside
    }
}

/// The warning and critical ranges of a check; either may be absent.
package struct CheckThresholds: Sendable, Equatable {
    package var warning: ThresholdRange?
    package var critical: ThresholdRange?

    package init(warning: ThresholdRange? = nil, critical: ThresholdRange? = nil) {
        self.warning = warning
        self.critical = critical
    }

    /// Parses `-w` and `-c`.
    package init(warning: String?, critical: String?) throws(CheckArgumentError) {
        self.warning = try warning.map { text throws(CheckArgumentError) in
            try ThresholdRange(parsing: text, option: "--warning")
        }
        self.critical = try critical.map { text throws(CheckArgumentError) in
            try ThresholdRange(parsing: text, option: "--critical")
        }
    }

    /// CRITICAL if the critical range alerts, else WARNING if the warning range does, else OK.
    package func state(for value: Double) -> CheckState {
        if critical?.alerts(value) == true { return .critical }
        if warning?.alerts(value) == true { return .warning }
        return .ok
    }
}

/// What a check measures: a gauge meter's value, a cumulative meter's rate per second between two readings, or
/// `memory.usage` as a percentage of the memory the guest sees.
package struct CheckMeasure: Sendable {
    package let meter: any Meter
    package let percent: Bool

    /// The measure for `--meter name [--percent]`; delta meters and unknown names are bad arguments.
    package init(meterName name: String, percent: Bool, registry: MeterRegistry = .builtIn)
        throws(CheckArgumentError) {
        guard let meter = registry.meter(named: name) else {
            throw CheckArgumentError("--meter: unknown meter '\(name)'; meters: "
                                     + registry.meters.filter { $0.type != .delta }.map(\.name).joined(separator: ", "))
        }
        guard meter.type != .delta else {
            let cumulative = name.hasSuffix(".delta") ? String(name.dropLast(".delta".count)) : "its cumulative meter"
            throw CheckArgumentError("--meter: \(name) is a delta meter; check the rate of \(cumulative) instead")
        }
        guard !percent || name == "memory.usage" else {
            throw CheckArgumentError("--percent applies to --meter memory.usage only")
        }
        self.meter = meter
        self.percent = percent
    }

    /// Whether the value needs two readings `--interval` apart (`cpu_util` and the rates of cumulative meters).
    package var needsTwoReadings: Bool { meter.type == .cumulative || meter.name == "cpu_util" }

    /// The measure's name in the output (`cpu_util`, `disk.device.read.bytes rate`, `memory.usage`).
    package var name: String { meter.type == .cumulative ? meter.name + " rate" : meter.name }

    /// The unit in the text (`%`, `MiB`, `B/s`).
    package var unit: String {
        if percent { return "%" }
        return meter.type == .cumulative ? meter.unit + "/s" : meter.unit
    }

    /// The guidelines' unit of measurement for perfdata: `%`, `B`, `MB` (for MiB), else none.
    package var perfdataUnit: String {
        switch unit {
        case "%", "B": return unit
        case "MiB": return "MB"
        default: return ""
        }
    }

    /// One value of the domain (or one per device), or why there is none. `previous` is the same domain's first
    /// reading when `needsTwoReadings`.
    package func values(_ now: DomainSnapshot, previous: DomainSnapshot?)
        -> Result<[(device: String?, value: Double)], CheckArgumentError> {
        func missing() -> CheckArgumentError {
            CheckArgumentError(meter.unavailableReason(now) ?? "the domain has no \(meter.name) reading")
        }
        if meter.type == .cumulative {
            guard let previous else { return .failure(CheckArgumentError("no first reading")) }
            let elapsed = now.monotonicTime - previous.monotonicTime
            guard elapsed > 0 else { return .failure(CheckArgumentError("the two readings are not apart in time")) }
            let before = Dictionary(meter.readings(previous, previous: nil).map { ($0.resourceID, $0) },
                                    uniquingKeysWith: { first, _ in first })
            let readings = meter.readings(now, previous: nil)
            guard !readings.isEmpty else { return .failure(missing()) }
            var values: [(device: String?, value: Double)] = []
            for reading in readings {
                let device = Self.device(of: reading)
                guard let first = before[reading.resourceID] else {
                    return .failure(CheckArgumentError("\(device ?? meter.name) appeared between the readings"))
                }
                let delta = reading.volume.doubleValue - first.volume.doubleValue
                guard delta >= 0 else {
                    return .failure(CheckArgumentError("the \(meter.name) counter went backwards between the readings"))
                }
                values.append((device, delta / elapsed))
            }
            return .success(values)
        }
        if meter.name == "cpu_util", previous?.totalCPUTime ?? 0 > now.totalCPUTime ?? 0 {
            return .failure(CheckArgumentError("the CPU counter went backwards between the readings (a restart?)"))
        }
        let readings = meter.readings(now, previous: previous)
        guard !readings.isEmpty else { return .failure(missing()) }
        if percent {
            guard let usage = readings.first?.volume.doubleValue, let available = now.balloon.available,
                  available > 0
            else { return .failure(missing()) }
            return .success([(nil, usage / (Double(available) / 1024) * 100)])
        }
        return .success(readings.map { (Self.device(of: $0), $0.volume.doubleValue) })
    }

    /// The disk or interface a per-device reading is of; nil for a domain-level one.
    static func device(of reading: Reading) -> String? {
        guard let resourceID = reading.resourceID else { return nil }
        for (key, value) in reading.metadata where key == "disk_name" || key == "vnic_name" {
            if let name = value.stringValue { return name }
        }
        return resourceID
    }
}

/// One measured value (or the reason there is none) of one domain, or of one of its devices.
package struct CheckResult: Sendable {
    package var domain: String
    package var device: String?
    package var value: Double?
    package var state: CheckState
    /// Why the value is missing (state UNKNOWN).
    package var reason: String?

    /// A measured value, its state from `thresholds`.
    package init(domain: String, device: String? = nil, value: Double, thresholds: CheckThresholds) {
        self.domain = domain
        self.device = device
        self.value = value
        self.state = thresholds.state(for: value)
    }

    /// An UNKNOWN result: the domain could not be measured, for `reason`.
    package init(domain: String, device: String? = nil, unknown reason: String) {
        self.domain = domain
        self.device = device
        self.state = .unknown
        self.reason = reason
    }
}

/// The results of one check and its output line.
package struct CheckReport: Sendable {
    package var measure: CheckMeasure
    package var thresholds: CheckThresholds
    package var results: [CheckResult]

    package init(measure: CheckMeasure, thresholds: CheckThresholds, results: [CheckResult]) {
        self.measure = measure
        self.thresholds = thresholds
        self.results = results
    }

    /// The results of `measure` over a domain's readings: one per value, or one UNKNOWN with the reason.
    package static func results(domain: String, measure: CheckMeasure, thresholds: CheckThresholds,
                               now: DomainSnapshot, previous: DomainSnapshot?) -> [CheckResult] {
        switch measure.values(now, previous: previous) {
        case .success(let values):
            return values.map { CheckResult(domain: domain, device: $0.device, value: $0.value,
                                            thresholds: thresholds) }
        case .failure(let reason):
            return [CheckResult(domain: domain, unknown: reason.description)]
        }
    }

    /// The worst state; UNKNOWN when there is no result at all.
    package var state: CheckState { results.isEmpty ? .unknown : CheckState.worst(results.map(\.state)) }

    /// `VIRTMETER <STATE> - <text> | <perfdata>`, one line.
    package var line: String {
        let perfdata = results.map(perfdata).joined(separator: " ")
        return Self.line(state, text) + (perfdata.isEmpty ? "" : " | " + perfdata)
    }

    /// The output line of a check that measured nothing: `VIRTMETER <STATE> - <text>`.
    package static func line(_ state: CheckState, _ text: String) -> String {
        "VIRTMETER \(state.word) - " + oneLine(text)
    }

    /// `text` on one line without the perfdata separator `|`.
    package static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 == "|" ? "/" : $0 })
    }

    private var text: String {
        guard !results.isEmpty else { return "no domain to check" }
        if results.count == 1 { return describe(results[0]) }
        let bad = results.filter { $0.state != .ok }.sorted { $0.state.severity > $1.state.severity }
        if bad.isEmpty {
            let highest = results.max { ($0.value ?? 0) < ($1.value ?? 0) }!
            let what = results.contains { $0.device != nil } ? "devices" : "domains"
            return "\(measure.name) OK on \(results.count) \(what), highest \(describe(highest))"
        }
        return "\(bad.count) of \(results.count) not OK: "
            + bad.map { describe($0) + " (\($0.state.word))" }.joined(separator: ", ")
    }

    private func subject(_ result: CheckResult) -> String {
        result.domain + (result.device.map { " " + $0 } ?? "") + " " + measure.name
    }

    private func describe(_ result: CheckResult) -> String {
        guard let value = result.value else { return subject(result) + ": " + (result.reason ?? "no value") }
        let unit = measure.unit
        return subject(result) + " " + Self.number(value) + (unit == "%" || unit.isEmpty ? unit : " " + unit)
    }

    private func perfdata(_ result: CheckResult) -> String {
        let meter = measure.meter.type == .cumulative ? measure.meter.name + "_rate" : measure.meter.name
        let label = ([result.domain] + (result.device.map { [$0] } ?? []) + [meter]).joined(separator: ":")
        let quoted = "'" + label.replacingAll("'", with: "''").replacingAll("=", with: "_") + "'"
        guard let value = result.value else { return quoted + "=U" }
        var fields = [Self.number(value) + measure.perfdataUnit, thresholds.warning?.description ?? "",
                      thresholds.critical?.description ?? "", "0"]
        if measure.unit == "%" { fields.append("100") }
        return quoted + "=" + fields.joined(separator: ";")
    }

    /// A number for text and perfdata: at most two decimals, no exponent, no trailing zeros (`49.87`, `100`).
    package static func number(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        var buffer = [CChar](repeating: 0, count: 64)
        _ = buffer.withUnsafeMutableBufferPointer { pointer in
            withVaList([value]) { vsnprintf(pointer.baseAddress, 64, "%.2f", $0) }
        }
        var text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text == "-0" ? "0" : text
    }
}

extension String {
    /// The string with every `target` replaced (Foundation-free).
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for character in self { if character == target { out += replacement } else { out.append(character) } }
        return out
    }
}

import ArgumentParser
import Foundation
import Logging
import Synchronization
import VirtMeterCore
import VirtMeterLibvirt

/// `virtmeter check`: a Nagios/Icinga plugin in the Monitoring Plugins guidelines' terms. One line
/// `VIRTMETER <STATE> - <text> | <perfdata>` on stdout, exit 0/1/2/3, UNKNOWN (3) on every failure.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "A Nagios/Icinga plugin: checks a meter of domains against threshold ranges (exit 0/1/2/3).",
        discussion: """
            Prints one line 'VIRTMETER <STATE> - <text> | <perfdata>' and exits 0 (OK), 1 (WARNING), 2 (CRITICAL) \
            or 3 (UNKNOWN: no such domain, libvirt unreachable, a meter the domain cannot provide, bad arguments, \
            the timeout). Ranges follow the Monitoring Plugins guidelines: 10 (alert outside 0..10), 10: (below \
            10), ~:10 (above 10), 10:20 (outside 10..20), @10:20 (inside 10..20). With several domains the state \
            is the worst (CRITICAL > WARNING > UNKNOWN > OK) and the text names the domains that are not OK.

            Compatibility form of the classic vCpu plugin: 'virtmeter check vcpu DOMAIN WARN CRIT [INTERVAL]' \
            means --domain DOMAIN --meter cpu_util -w WARN -c CRIT --interval INTERVAL.
            """
    )

    @Option(name: .customLong("connect"), help: "libvirt connection URI, always opened read-only.")
    var uri = "qemu:///system"

    @Option(name: .customLong("domain"),
            help: ArgumentHelp("A domain to check, by name or UUID (repeatable).", valueName: "name|uuid"))
    var domains: [String] = []

    @Flag(help: "Check every active domain.")
    var all = false

    @Option(help: ArgumentHelp("The meter: a gauge (cpu_util, memory.usage, memory.resident, ...) or a cumulative "
                               + "meter, whose rate per second is checked (default cpu_util).", valueName: "name"))
    var meter: String?

    @Flag(help: "memory.usage as a percentage of the memory the guest sees (its balloon 'available').")
    var percent = false

    @Option(name: [.customShort("w"), .long], help: "Warning threshold range.")
    var warning: String?

    @Option(name: [.customShort("c"), .long], help: "Critical threshold range.")
    var critical: String?

    @Option(name: [.customShort("t"), .long], help: "Seconds until the check gives up with UNKNOWN.")
    var timeout: Double = 10

    @Option(help: "Seconds between the two readings that cpu_util and rates need.")
    var interval: Double = 2

    @Argument(help: ArgumentHelp("The compatibility form: vcpu DOMAIN WARN CRIT [INTERVAL].",
                                 valueName: "vcpu-form"))
    var compatibility: [String] = []

    /// What to check, from the arguments.
    struct Plan {
        var measure: CheckMeasure
        var thresholds: CheckThresholds
        /// Names or UUIDs; empty means every active domain.
        var domains: [String]
        var interval: Double
    }

    func run() async throws {
        let plan: Plan
        do {
            plan = try makePlan()
        } catch {
            CheckExit.finish(.unknown, CheckReport.line(.unknown, error.description))
        }
        CheckExit.arm(seconds: timeout, interval: plan.interval)
        let silent = Logger(label: "virtmeter.check") { _ in SwiftLogNoOpLogHandler() }
        let hypervisor: LibvirtHypervisor
        do {
            hypervisor = try LibvirtHypervisor(uri: uri, readOnly: true, logger: silent)
        } catch {
            CheckExit.finish(.unknown, CheckReport.line(.unknown, "cannot connect to libvirt: \(error)"))
        }
        do {
            let results = try await check(plan, hypervisor)
            guard !results.isEmpty else {
                CheckExit.finish(.unknown, CheckReport.line(.unknown, "no active domain on \(uri)"))
            }
            let report = CheckReport(measure: plan.measure, thresholds: plan.thresholds, results: results)
            CheckExit.finish(report.state, report.line)
        } catch {
            CheckExit.finish(.unknown, CheckReport.line(.unknown, "\(error)"))
        }
    }

    /// The plan from the options, or from the compatibility form.
    func makePlan() throws(CheckArgumentError) -> Plan {
        guard timeout.isFinite, timeout > 0 else { throw CheckArgumentError("--timeout must be a positive number") }
        var domains = domains, meterName = meter ?? "cpu_util", warning = warning, critical = critical
        var interval = interval
        if let form = compatibility.first {
            guard form == "vcpu", compatibility.count == 4 || compatibility.count == 5 else {
                throw CheckArgumentError("unexpected arguments '\(compatibility.joined(separator: " "))'; the "
                                         + "compatibility form is: vcpu DOMAIN WARN CRIT [INTERVAL]")
            }
            guard domains.isEmpty, !all, meter == nil, warning == nil, critical == nil else {
                throw CheckArgumentError("the compatibility form 'vcpu DOMAIN WARN CRIT [INTERVAL]' takes no "
                                         + "--domain, --all, --meter, -w or -c")
            }
            domains = [compatibility[1]]
            meterName = "cpu_util"
            warning = compatibility[2]
            critical = compatibility[3]
            if compatibility.count == 5 {
                guard let seconds = Double(compatibility[4]) else {
                    throw CheckArgumentError("INTERVAL '\(compatibility[4])' is not a number of seconds")
                }
                interval = seconds
            }
        }
        guard interval.isFinite, interval > 0 else { throw CheckArgumentError("--interval must be a positive number") }
        guard all != !domains.isEmpty else {
            throw CheckArgumentError(all ? "give --all or --domain, not both"
                                         : "no domain: give --domain NAME or UUID (repeatable), or --all")
        }
        let measure = try CheckMeasure(meterName: meterName, percent: percent)
        let thresholds = try CheckThresholds(warning: warning, critical: critical)
        var unique: [String] = []
        for domain in domains where !unique.contains(domain) { unique.append(domain) }
        return Plan(measure: measure, thresholds: thresholds, domains: unique, interval: interval)
    }

    /// One domain read: its snapshot and id, or why it could not be read.
    private typealias Read = (name: String, domain: Result<IdentifiedSnapshot, CheckArgumentError>)

    /// Reads the domains once (every active one, by name, when the plan names none).
    private func read(_ plan: Plan, _ hypervisor: LibvirtHypervisor) async throws -> [Read] {
        guard !plan.domains.isEmpty else {
            return try await hypervisor.readActive().sorted { $0.snapshot.name < $1.snapshot.name }
                .map { ($0.snapshot.name, .success($0)) }
        }
        return try await zip(plan.domains, hypervisor.read(domains: plan.domains)).map { query, lookup in
            switch lookup {
            case .read(let domain): return (domain.snapshot.name, .success(domain))
            case .noSuchDomain: return (query, .failure(CheckArgumentError("no such domain on \(uri)")))
            case .notRunning(let name, let state):
                return (name, .failure(CheckArgumentError("the domain is \(state), not running")))
            case .failed(let reason): return (query, .failure(CheckArgumentError(reason)))
            }
        }
    }

    /// The results: one reading, or two `interval` apart (on the monotonic clock) for cpu_util and rates.
    private func check(_ plan: Plan, _ hypervisor: LibvirtHypervisor) async throws -> [CheckResult] {
        let first = try await read(plan, hypervisor)
        func results(_ name: String, now: DomainSnapshot, previous: DomainSnapshot?) -> [CheckResult] {
            CheckReport.results(domain: name, measure: plan.measure, thresholds: plan.thresholds, now: now,
                                previous: previous)
        }
        guard plan.measure.needsTwoReadings else {
            return first.flatMap { name, domain in
                switch domain {
                case .success(let read): return results(name, now: read.snapshot, previous: nil)
                case .failure(let reason): return [CheckResult(domain: name, unknown: reason.description)]
                }
            }
        }
        let firstTime = first.compactMap { try? $0.domain.get().snapshot.monotonicTime }.min() ?? SampleClock.monotonic()
        let wait = firstTime + plan.interval - SampleClock.monotonic()
        if wait > 0 { try await Task.sleep(for: .milliseconds(Int64(wait * 1000))) }
        let second = try await read(plan, hypervisor)
        var secondByUUID: [String: IdentifiedSnapshot] = [:]
        for case .success(let domain) in second.map(\.domain) { secondByUUID[domain.snapshot.uuid] = domain }
        return first.enumerated().flatMap { index, entry -> [CheckResult] in
            let before: IdentifiedSnapshot
            switch entry.domain {
            case .success(let domain): before = domain
            case .failure(let reason): return [CheckResult(domain: entry.name, unknown: reason.description)]
            }
            guard let after = secondByUUID[before.snapshot.uuid] else {
                // Named domains are read again by the same query: its second answer says what became of it.
                if !plan.domains.isEmpty, index < second.count, case .failure(let reason) = second[index].domain {
                    return [CheckResult(domain: entry.name, unknown: "between the two readings: \(reason)")]
                }
                return [CheckResult(domain: entry.name, unknown: "the domain went away between the two readings")]
            }
            guard after.id == before.id else {
                return [CheckResult(domain: entry.name, unknown: "the domain restarted between the two readings "
                                    + "(id \(before.id), then \(after.id))")]
            }
            return results(entry.name, now: after.snapshot, previous: before.snapshot)
        }
    }

    /// A command-line parsing error of `check` as the plugin's UNKNOWN line and exit 3 (help still prints and
    /// exits 0).
    static func exitParsing(_ error: any Error) -> Never {
        if VirtMeter.exitCode(for: error) == .success { VirtMeter.exit(withError: error) }
        let message = VirtMeter.message(for: error)
        CheckExit.finish(.unknown, CheckReport.line(.unknown, "bad arguments: \(message)"))
    }
}

/// The check's single exit: whichever comes first, the result or the timeout, prints the one line and exits.
enum CheckExit {
    private static let finished = Mutex(false)

    private static func claim() -> Bool {
        finished.withLock { done in
            defer { done = true }
            return !done
        }
    }

    /// Prints `line` and exits with `state`'s code, unless the timeout already did.
    static func finish(_ state: CheckState, _ line: String) -> Never {
        if claim() {
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
            exit(state.rawValue)
        }
        // The timer has printed UNKNOWN and is exiting.
        while true { sleep(1) }
    }

    /// Starts the timer: after `seconds` it prints UNKNOWN and ends the process at once, even while a libvirt
    /// call is stuck.
    static func arm(seconds: Double, interval: Double) {
        let line = CheckReport.line(.unknown, "timed out after \(CheckReport.number(seconds)) s (--timeout; "
                                    + "--interval is \(CheckReport.number(interval)) s)")
        let thread = Thread {
            Thread.sleep(forTimeInterval: seconds)
            guard claim() else { return }
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
            _exit(CheckState.unknown.rawValue)
        }
        thread.start()
    }
}

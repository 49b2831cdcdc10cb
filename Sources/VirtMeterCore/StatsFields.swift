/// A bulk-stats field as a declared meter names it: `balloon.major_fault`, or `block.N.fl.reqs` where `N` stands
/// for any vCPU, disk or interface index.
package struct FieldPattern: Sendable, Hashable, CustomStringConvertible {
    /// The field as written, `N` included.
    package let text: String
    /// What comes before the index (`block.`) and after it (`.fl.reqs`); nil for a field without `N`.
    package let prefix: String?
    package let suffix: String?

    /// Parses `text`; nil when it has more than one `N` component or an empty component.
    package init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else { return nil }
        let indexes = parts.indices.filter { parts[$0] == "N" }
        guard indexes.count <= 1 else { return nil }
        self.text = text
        if let at = indexes.first {
            guard at > 0 else { return nil }
            prefix = parts[..<at].joined(separator: ".") + "."
            suffix = at + 1 < parts.count ? "." + parts[(at + 1)...].joined(separator: ".") : ""
        } else {
            prefix = nil
            suffix = nil
        }
    }

    /// Whether `N` stands for an index in this field.
    package var isIndexed: Bool { prefix != nil }

    /// The first component, which names the stats group (`balloon`, `vcpu`, `block`, `net`, `perf`, ...).
    package var group: String { String(text.prefix { $0 != "." }) }

    /// The index `N` stands for in `field` (nil when it does not match); -1 for a match of a field without `N`.
    package func index(in field: String) -> Int? {
        guard let prefix, let suffix else { return field == text ? -1 : nil }
        guard field.count > prefix.count + suffix.count, field.hasPrefix(prefix), field.hasSuffix(suffix) else {
            return nil
        }
        let digits = field.dropFirst(prefix.count).dropLast(suffix.count)
        guard digits.allSatisfy(\.isASCIIDigit) else { return nil }
        return Int(digits)
    }

    package var description: String { text }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

/// A value the inspector kept from a domain's bulk stats because a declared meter reads it.
package struct StatsField: Sendable, Equatable {
    /// The pattern it matched (`block.N.fl.reqs`).
    package var pattern: FieldPattern
    /// The index `N` stood for; -1 for a field without `N`.
    package var index: Int
    package var value: Volume
    /// The device of index `N` for `block.N.*` and `net.N.*` fields (`vda`, `vnet0`); nil otherwise.
    package var device: String?

    package init(pattern: FieldPattern, index: Int, value: Volume, device: String? = nil) {
        self.pattern = pattern
        self.index = index
        self.value = value
        self.device = device
    }
}

/// The bulk-stats fields the polled declared meters read, and the stats groups they need: what the inspector keeps
/// (`DomainSnapshot.statsFields`) and adds to its bulk call. Empty when no declared meter is polled. Built from the
/// polled meters, it also says which devices' stats they read (`devices`), which the inspector reads only then.
package struct StatsFieldRequest: Sendable, Equatable {
    package let patterns: [FieldPattern]
    private let exact: Set<String>
    /// Indexed patterns by their group, for a quick look-up per field.
    private let indexed: [String: [FieldPattern]]
    /// The devices whose stats the polled meters read (all unless built from the meters).
    package private(set) var devices = DeviceGroups.all

    package init(_ patterns: [FieldPattern]) {
        var unique: [FieldPattern] = []
        for pattern in patterns where !unique.contains(pattern) { unique.append(pattern) }
        self.patterns = unique
        exact = Set(unique.filter { !$0.isIndexed }.map(\.text))
        indexed = Dictionary(grouping: unique.filter(\.isIndexed), by: \.group)
    }

    /// The fields the declared meters among `meters` read.
    package init(meters: [any Meter]) {
        self.init(meters.compactMap { ($0 as? DeclaredMeter)?.declaration.field })
        devices = meters.reduce([]) { $0.union($1.devices) }
    }

    /// Nothing: no declared meter is polled.
    package static let none = StatsFieldRequest([])

    package var isEmpty: Bool { patterns.isEmpty }

    /// The stats groups (first components) the patterns need.
    package var groups: Set<String> { Set(patterns.map(\.group)) }

    /// The pattern `field` matches and the index `N` stands for, or nil. `group` is the field's first component.
    package func match(_ field: String, group: String) -> (FieldPattern, Int)? {
        if exact.contains(field), let pattern = patterns.first(where: { $0.text == field }) { return (pattern, -1) }
        guard let candidates = indexed[group] else { return nil }
        for pattern in candidates {
            if let index = pattern.index(in: field) { return (pattern, index) }
        }
        return nil
    }
}

/// The fields libvirt's bulk statistics (`virConnectGetAllDomainStats`, `virsh domstats`) can return, as libvirt 9
/// documents them, with `N` for every index. A declared field must match one: a misspelt field is refused before it
/// silently measures nothing. `*` stands for one hypervisor-specific name component (QEMU's `vcpu.N.*.sum`).
package enum StatsCatalog {
    /// Numeric fields by group.
    package static let fields: [String: [String]] = [
        "state": ["state.state", "state.reason"],
        "cpu": ["cpu.time", "cpu.user", "cpu.system", "cpu.haltpoll.success.time", "cpu.haltpoll.fail.time",
                "cpu.cache.monitor.count", "cpu.cache.monitor.N.bank.count"],
        "balloon": ["balloon.current", "balloon.maximum", "balloon.swap_in", "balloon.swap_out",
                    "balloon.major_fault", "balloon.minor_fault", "balloon.unused", "balloon.available",
                    "balloon.rss", "balloon.usable", "balloon.last-update", "balloon.disk_caches",
                    "balloon.hugetlb_pgalloc", "balloon.hugetlb_pgfail"],
        "vcpu": ["vcpu.current", "vcpu.maximum", "vcpu.N.state", "vcpu.N.time", "vcpu.N.wait", "vcpu.N.halted",
                 "vcpu.N.delay", "vcpu.N.*.cur", "vcpu.N.*.sum", "vcpu.N.*.max"],
        "net": ["net.count", "net.N.rx.bytes", "net.N.rx.pkts", "net.N.rx.errs", "net.N.rx.drop", "net.N.tx.bytes",
                "net.N.tx.pkts", "net.N.tx.errs", "net.N.tx.drop"],
        "block": ["block.count", "block.N.backingIndex", "block.N.rd.reqs", "block.N.rd.bytes", "block.N.rd.times",
                  "block.N.wr.reqs", "block.N.wr.bytes", "block.N.wr.times", "block.N.fl.reqs", "block.N.fl.times",
                  "block.N.errors", "block.N.allocation", "block.N.capacity", "block.N.physical",
                  "block.N.threshold"],
        "perf": ["perf.cmt", "perf.mbmt", "perf.mbml", "perf.cpu_cycles", "perf.instructions",
                 "perf.cache_references", "perf.cache_misses", "perf.branch_instructions", "perf.branch_misses",
                 "perf.bus_cycles", "perf.stalled_cycles_frontend", "perf.stalled_cycles_backend",
                 "perf.ref_cpu_cycles", "perf.cpu_clock", "perf.task_clock", "perf.page_faults",
                 "perf.context_switches", "perf.cpu_migrations", "perf.page_faults_min", "perf.page_faults_maj",
                 "perf.alignment_faults", "perf.emulation_faults"],
        "iothread": ["iothread.count", "iothread.N.poll-max-ns", "iothread.N.poll-grow", "iothread.N.poll-shrink"],
        "memory": ["memory.bandwidth.monitor.count", "memory.bandwidth.monitor.N.node.count"],
        "dirtyrate": ["dirtyrate.calc_status", "dirtyrate.calc_start_time", "dirtyrate.calc_period",
                      "dirtyrate.megabytes_per_second", "dirtyrate.vcpu.N.megabytes_per_second"],
        "vm": ["vm.*.cur", "vm.*.sum", "vm.*.max"],
    ]

    /// Fields that hold names, not numbers.
    package static let textFields = ["block.N.name", "block.N.path", "net.N.name", "cpu.cache.monitor.N.name",
                                    "cpu.cache.monitor.N.vcpus", "memory.bandwidth.monitor.N.name",
                                    "memory.bandwidth.monitor.N.vcpus", "dirtyrate.calc_mode"]

    /// Whether the catalog has `field` (a pattern with `N`).
    package static func knows(_ field: String) -> Bool {
        guard let group = fields[String(field.prefix { $0 != "." })] else { return false }
        let parts = field.split(separator: ".", omittingEmptySubsequences: false)
        return group.contains { entry in
            let wanted = entry.split(separator: ".", omittingEmptySubsequences: false)
            return wanted.count == parts.count && zip(wanted, parts).allSatisfy { $0 == "*" || $0 == $1 }
        }
    }
}

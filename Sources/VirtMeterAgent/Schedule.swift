/// When each polling source is due, as times on the poll loop's `ElapsedClock`. Sources due at the same moment are
/// polled in one cycle (one libvirt read); a source's cycles never overlap: a cycle that overruns its interval makes
/// the missed ticks be skipped, counted, not queued up.
package struct Schedule: Sendable {
    struct Entry: Sendable {
        let name: String
        let interval: Duration
        var next: Duration
    }
    private(set) var entries: [Entry]

    /// Sources due within this long of each other share a cycle.
    static let coalesceWindow = Duration.milliseconds(5)

    /// Every source is first due at `start`.
    package init(sources: [(name: String, interval: Duration)], start: Duration) {
        entries = sources.map { Entry(name: $0.name, interval: $0.interval, next: start) }
    }

    /// The earliest due time and the names of all sources due then; nil without sources.
    package func next() -> (time: Duration, sources: [String])? {
        guard let earliest = entries.map(\.next).min() else { return nil }
        return (earliest, entries.filter { $0.next <= earliest + Self.coalesceWindow }.map(\.name))
    }

    /// Records that `sources` were polled in a cycle that ended at `now`: each is next due one interval after its
    /// due time, or at the first tick still ahead of `now` when the cycle overran. Returns the ticks skipped per
    /// source (only those that skipped any).
    package mutating func advance(_ sources: [String], now: Duration) -> [String: Int] {
        var skipped: [String: Int] = [:]
        for index in entries.indices where sources.contains(entries[index].name) {
            let interval = entries[index].interval
            var next = entries[index].next + interval
            if next <= now {
                var missed = Int(((now - next) / interval).rounded(.down)) + 1
                if next + interval * missed <= now { missed += 1 }   // the division rounded just below a whole tick
                next += interval * missed
                skipped[entries[index].name] = missed
            }
            entries[index].next = next
        }
        return skipped
    }

    /// Replaces the sources (a reload): a source with the same name and interval keeps its next due time, others
    /// are due at `now`.
    package mutating func replace(with sources: [(name: String, interval: Duration)], now: Duration) {
        entries = sources.map { source in
            let kept = entries.first { $0.name == source.name && $0.interval == source.interval }
            return Entry(name: source.name, interval: source.interval, next: kept?.next ?? now)
        }
    }
}

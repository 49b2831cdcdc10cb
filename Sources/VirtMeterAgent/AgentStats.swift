import Synchronization

/// Counters of the running agent, shared by the poll and publish services for the periodic summary.
public final class AgentStats: Sendable {
    /// A copy of the counters at one moment.
    public struct Counters: Sendable, Equatable {
        public var cycles = 0
        public var domains = 0
        public var samplesProduced = 0
        public var samplesPublished = 0
        /// Delivery attempts that failed (each is retried).
        public var publishFailures = 0
        /// Samples refused because a number could not be written (NaN or infinite).
        public var samplesRefused = 0
        public var skippedTicks = 0
        public var publishSeconds = 0.0
        public var publishCalls = 0
    }

    private let counters = Mutex(Counters())

    public init() {}

    /// The counters now.
    public var snapshot: Counters { counters.withLock { $0 } }

    /// Applies `change` to the counters and returns what it returns.
    @discardableResult
    public func update<T>(_ change: (inout Counters) -> T) -> T {
        counters.withLock { change(&$0) }
    }
}

import Synchronization

/// Counters of the running agent, shared by the poll and publish services for the periodic summary.
package final class AgentStats: Sendable {
    /// A copy of the counters at one moment.
    package struct Counters: Sendable, Equatable {
        package var cycles = 0
        package var domains = 0
        package var samplesProduced = 0
        package var samplesPublished = 0
        /// Delivery attempts that failed (each is retried).
        package var publishFailures = 0
        /// Samples refused because a number could not be written (NaN or infinite).
        package var samplesRefused = 0
        package var skippedTicks = 0
        package var publishSeconds = 0.0
        package var publishCalls = 0
    }

    private let counters = Mutex(Counters())

    package init() {}

    /// The counters now.
    package var snapshot: Counters { counters.withLock { $0 } }

    /// Applies `change` to the counters and returns what it returns.
    @discardableResult
    package func update<T>(_ change: (inout Counters) -> T) -> T {
        counters.withLock { change(&$0) }
    }
}

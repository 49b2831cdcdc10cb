/// The clock the agent's loops measure and sleep on, read as the time elapsed since it was made: the schedule, the
/// retry delays and the outages are plain `Duration`s. Production uses `ContinuousClock`; tests inject a test clock
/// and move time themselves. (Samples are stamped with `SampleClock`, not this.)
package struct ElapsedClock: Sendable {
    private let reading: @Sendable () -> Duration
    private let sleeping: @Sendable (Duration) async throws -> Void

    /// Time on `clock`, counted from now.
    package init(_ clock: any Clock<Duration> = ContinuousClock()) {
        (reading, sleeping) = Self.opened(clock)
    }

    private static func opened<C: Clock<Duration>>(_ clock: C)
        -> (@Sendable () -> Duration, @Sendable (Duration) async throws -> Void) {
        let origin = clock.now
        return ({ origin.duration(to: clock.now) },
                { try await clock.sleep(until: origin.advanced(by: $0), tolerance: nil) })
    }

    /// The time elapsed since this clock was made.
    package var now: Duration { reading() }

    /// Sleeps until `now` reaches `deadline`; throws `CancellationError` when the task is cancelled.
    package func sleep(until deadline: Duration) async throws {
        try await sleeping(deadline)
    }

    /// Sleeps for `duration`.
    package func sleep(for duration: Duration) async throws {
        try await sleeping(now + duration)
    }
}

extension Duration {
    /// The duration in seconds, for logs, statistics and metrics.
    package var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

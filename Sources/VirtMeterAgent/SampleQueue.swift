import Logging
import VirtMeterCore

/// The hand-over from polling to publishing: polling never waits for a publisher. When publishers fall behind by
/// more than `limit` cycles, the oldest cycle's samples are dropped, counted and logged, never silently.
public final class SampleQueue: Sendable {
    /// The cycles' samples, in order, until `finish()`.
    public let stream: AsyncStream<[Sample]>
    private let continuation: AsyncStream<[Sample]>.Continuation
    private let stats: AgentStats
    private let logger: Logger

    public init(limit: Int, stats: AgentStats, logger: Logger) {
        (stream, continuation) = AsyncStream.makeStream(of: [Sample].self, bufferingPolicy: .bufferingNewest(limit))
        self.stats = stats
        self.logger = logger
    }

    /// Queues one cycle's samples for the publishers.
    public func put(_ samples: [Sample]) {
        guard !samples.isEmpty else { return }
        if case .dropped(let old) = continuation.yield(samples) {
            stats.update { $0.samplesDropped += old.count }
            logger.warning("publishers are behind: dropped the oldest queued samples", metadata: ["samples": "\(old.count)"])
        }
    }

    /// No more samples will come; the publishers drain what is queued and stop.
    public func finish() { continuation.finish() }
}

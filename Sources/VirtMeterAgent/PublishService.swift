import Logging
import ServiceLifecycle
import VirtMeterCore

/// Takes each cycle's samples from the queue and hands them to every publisher. It runs until polling has finished
/// the queue, so on shutdown it drains what was already produced before it closes the publishers.
public final class PublishService: Service {
    private let queue: SampleQueue
    private let publishers: [any Publisher]
    private let stats: AgentStats
    private let logger: Logger

    public init(queue: SampleQueue, publishers: [any Publisher], stats: AgentStats, logger: Logger) {
        self.queue = queue
        self.publishers = publishers
        self.stats = stats
        self.logger = logger
    }

    public func run() async throws {
        for await samples in queue.stream {
            for publisher in publishers {
                let start = Clock.monotonic()
                do {
                    try await publisher.publish(samples)
                    stats.update {
                        $0.samplesPublished += samples.count
                        $0.publishSeconds += Clock.monotonic() - start
                        $0.publishCalls += 1
                    }
                } catch {
                    stats.update { $0.samplesFailed += samples.count }
                    logger.error("publishing failed", metadata: ["samples": "\(samples.count)", "error": "\(error)"])
                }
            }
        }
        // The queue ends when polling stops, which happens during a graceful shutdown: stay until the group says so,
        // or it would count this service's end as unexpected.
        try? await gracefulShutdown()
        for publisher in publishers { await publisher.close() }
        logger.debug("publishers closed")
    }
}

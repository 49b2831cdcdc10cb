import Logging
import ServiceLifecycle
import VirtMeterCore

/// How long to wait between delivery attempts while publishing fails: exponential, with jitter, bounded.
package struct Backoff: Sendable, Equatable {
    package var initial: Double
    package var maximum: Double

    package init(initial: Double = 0.5, maximum: Double = 30) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before attempt `attempt` (1 is the first retry): `initial · 2^(attempt-1)`, capped at `maximum`, then
    /// scaled by a random factor in [0.5, 1] so that many agents do not retry in step.
    package func delay(attempt: Int) -> Double {
        let exponential = initial * Double(1 << min(max(attempt - 1, 0), 30))
        return min(exponential, maximum) * Double.random(in: 0.5...1)
    }
}

/// Delivers the spool's records to every publisher, oldest first, and acknowledges them once all publishers have
/// them (for AMQP: the broker confirmed them). While publishing fails the records stay in the spool and are retried
/// with backoff; the outage is logged once when it starts and once when it ends. It runs until polling has finished
/// the spool and everything is delivered, or the shutdown timeout cancels it (what is left stays on disk).
package final class PublishService: Service {
    private let spool: Spool
    private let publishers: [any Publisher]
    private let stats: AgentStats
    private let backoff: Backoff
    private let recordsPerDelivery: Int
    private let vitals: AgentVitals?
    private let logger: Logger

    /// `recordsPerDelivery` records (each at most one message) are handed to a publisher at once, so confirms are
    /// awaited in windows. `vitals`, when given, hears of every delivery (the Prometheus endpoint's metrics).
    package init(spool: Spool, publishers: [any Publisher], stats: AgentStats, backoff: Backoff = Backoff(),
                recordsPerDelivery: Int = 20, vitals: AgentVitals? = nil, logger: Logger) {
        self.vitals = vitals
        self.spool = spool
        self.publishers = publishers
        self.stats = stats
        self.backoff = backoff
        self.recordsPerDelivery = recordsPerDelivery
        self.logger = logger
    }

    package func run() async throws {
        var outageStart: Double?
        delivery: while let batch = await spool.next(maxRecords: recordsPerDelivery) {
            var pending = Array(publishers.indices)
            var attempt = 0
            while !pending.isEmpty {
                var failure: (any Error)?
                for index in pending {
                    let start = SampleClock.monotonic()
                    do {
                        try await publishers[index].publish(batch.records)
                        pending.removeAll { $0 == index }
                        stats.update {
                            $0.publishSeconds += SampleClock.monotonic() - start
                            $0.publishCalls += 1
                        }
                        vitals?.published(seconds: SampleClock.monotonic() - start)
                    } catch {
                        failure = error
                    }
                }
                guard let failure else { break }
                attempt += 1
                stats.update { $0.publishFailures += 1 }
                vitals?.publishFailed()
                if outageStart == nil {
                    outageStart = SampleClock.monotonic()
                    logger.warning("publishing failed: samples stay in the spool and are retried", metadata: [
                        "samples": "\(batch.records.sampleCount)", "error": "\(failure)",
                    ])
                } else {
                    logger.debug("publishing still failing", metadata: ["attempt": "\(attempt)", "error": "\(failure)"])
                }
                do {
                    try await Task.sleep(for: .seconds(backoff.delay(attempt: attempt)))
                } catch {
                    break delivery   // cancelled: the batch stays in the spool for the next start
                }
            }
            if let start = outageStart {
                logger.notice("publishing recovered", metadata: [
                    "outage_seconds": "\(Int((SampleClock.monotonic() - start).rounded()))",
                    "spool_records": "\(spool.currentCounters.pendingRecords)",
                ])
                outageStart = nil
            }
            await spool.acknowledge(batch)
            stats.update { $0.samplesPublished += batch.records.sampleCount }
            vitals?.delivered(samples: batch.records.sampleCount)
        }
        // The spool ends when polling stops, which happens during a graceful shutdown: stay until the group says so,
        // or it would count this service's end as unexpected.
        try? await gracefulShutdown()
        for publisher in publishers { await publisher.close() }
        logger.debug("publishers closed")
    }
}

import Logging
import ServiceLifecycle
import VirtMeterCore

/// How long to wait between delivery attempts while publishing fails: exponential, with jitter, bounded.
package struct Backoff: Sendable, Equatable {
    package var initial: Double
    package var maximum: Double
    /// The range of the random factor.
    package var jitter: ClosedRange<Double>

    /// Delays from `initial` to `maximum` seconds, scaled by a random factor in `jitter`.
    package init(initial: Double = 0.5, maximum: Double = 30, jitter: ClosedRange<Double> = 0.5...1) {
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The delay before attempt `attempt` (1 is the first retry): `initial · 2^(attempt-1)` seconds, capped at
    /// `maximum`, then scaled by a random factor in `jitter` ([0.5, 1]) so that many agents do not retry in step.
    package func delay(attempt: Int) -> Duration {
        let exponential = initial * Double(1 << min(max(attempt - 1, 0), 30))
        return .seconds(min(exponential, maximum) * Double.random(in: jitter))
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
    private let clock: ElapsedClock
    private let logger: Logger

    /// `recordsPerDelivery` records (each at most one message) are handed to a publisher at once, so confirms are
    /// awaited in windows. `vitals`, when given, hears of every delivery (the Prometheus endpoint's metrics). The
    /// retry delays, outages and publishing latencies are measured on `clock`.
    package init(spool: Spool, publishers: [any Publisher], stats: AgentStats, backoff: Backoff = Backoff(),
                recordsPerDelivery: Int = 20, vitals: AgentVitals? = nil,
                clock: any Clock<Duration> = ContinuousClock(), logger: Logger) {
        self.vitals = vitals
        self.clock = ElapsedClock(clock)
        self.spool = spool
        self.publishers = publishers
        self.stats = stats
        self.backoff = backoff
        self.recordsPerDelivery = recordsPerDelivery
        self.logger = logger
    }

    package func run() async throws {
        var outageStart: Duration?
        // Each batch is acknowledged when the next one is asked for: one trip to the spool's queue, not two.
        var delivered: SpoolReceipt?
        delivery: while let batch = await spool.next(maxRecords: recordsPerDelivery, acknowledging: delivered) {
            var pending = Array(publishers.indices)
            var attempt = 0
            while !pending.isEmpty {
                var failure: (any Error)?
                for index in pending {
                    let start = clock.now
                    do {
                        try await publishers[index].publish(batch.records)
                        pending.removeAll { $0 == index }
                        let seconds = (clock.now - start).inSeconds
                        stats.update {
                            $0.publishSeconds += seconds
                            $0.publishCalls += 1
                        }
                        vitals?.published(seconds: seconds)
                    } catch {
                        failure = error
                    }
                }
                guard let failure else { break }
                attempt += 1
                stats.update { $0.publishFailures += 1 }
                vitals?.publishFailed()
                if outageStart == nil {
                    outageStart = clock.now
                    logger.warning("publishing failed: samples stay in the spool and are retried", metadata: [
                        "virtmeter.publish.samples": "\(batch.records.sampleCount)",
                        "virtmeter.publish.error": "\(failure)",
                    ])
                } else {
                    logger.debug("publishing still failing", metadata: [
                        "virtmeter.publish.attempt": "\(attempt)", "virtmeter.publish.error": "\(failure)",
                    ])
                }
                do {
                    try await clock.sleep(for: backoff.delay(attempt: attempt))
                } catch {
                    break delivery   // cancelled: the batch stays in the spool for the next start
                }
            }
            if let start = outageStart {
                logger.notice("publishing recovered", metadata: [
                    "virtmeter.publish.outage_seconds": "\(Int((clock.now - start).inSeconds.rounded()))",
                    "virtmeter.publish.spool_records": "\(spool.currentCounters.pendingRecords)",
                ])
                outageStart = nil
            }
            delivered = batch.receipt
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

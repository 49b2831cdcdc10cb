import CRabbitMQ
import Dispatch
import Foundation
import Logging
import Synchronization
import VirtMeterCore

/// How `AMQPPublisher` reaches the broker and routes samples; the defaults are ceilometer's.
package struct AMQPPublisherConfiguration: Sendable {
    /// The broker and credentials (the first node of a cluster).
    package var url: AMQPURL
    /// The other nodes of the broker's cluster, each with its own credentials, tried in turn after `url`.
    package var failoverNodes: [AMQPURL]
    /// Whether the nodes' order is shuffled once at start, so that many agents do not all pick the first node.
    package var shuffleNodes: Bool
    /// TLS settings, used when `url` is `amqps`.
    package var tls: AMQPTLSOptions
    /// The exchange (`ceilometer`, type topic).
    package var exchange: String
    /// Whether the exchange is declared durable; must match an existing exchange (ceilometer's is not durable).
    /// A durable exchange gets a durable classic queue.
    package var durableExchange: Bool
    /// Whether the `<topic>.sample` queue is a quorum queue (durable, `x-queue-type: quorum`, replicated over the
    /// cluster's nodes), as oslo.messaging's `rabbit_quorum_queue` declares it; implies a durable exchange.
    package var quorumQueue: Bool
    /// The notification topic; the routing key and the queue are `<topic>.sample`.
    package var topic: String
    /// Whether to declare and bind the `<topic>.sample` queue on every (re)connect, as oslo.messaging's notifier does.
    package var declareQueue: Bool
    /// At most this many messages in flight before waiting for their confirms.
    package var confirmWindow: Int
    /// How long to wait for the confirms of a window, and for connecting, in seconds.
    package var timeoutSeconds: Double
    /// AMQP heartbeat in seconds (0: none); serviced between publishes by a timer on the connection's queue.
    package var heartbeatSeconds: Int
    /// `publisher_id` of the notifications.
    package var publisherID: String

    /// A configuration for `url` with ceilometer's defaults.
    package init(url: AMQPURL, failoverNodes: [AMQPURL] = [], shuffleNodes: Bool = false,
                tls: AMQPTLSOptions = AMQPTLSOptions(), exchange: String = CeilometerAMQP.exchange,
                durableExchange: Bool = CeilometerAMQP.durableExchange, quorumQueue: Bool = false,
                topic: String = CeilometerAMQP.topic, declareQueue: Bool = true, confirmWindow: Int = 256,
                timeoutSeconds: Double = 10, heartbeatSeconds: Int = CeilometerAMQP.heartbeatSeconds,
                publisherID: String = NotificationEnvelope.defaultPublisherID) {
        self.url = url
        self.failoverNodes = failoverNodes
        self.shuffleNodes = shuffleNodes
        self.tls = tls
        self.exchange = exchange
        self.durableExchange = durableExchange
        self.quorumQueue = quorumQueue
        self.topic = topic
        self.declareQueue = declareQueue
        self.confirmWindow = max(1, confirmWindow)
        self.timeoutSeconds = timeoutSeconds
        self.heartbeatSeconds = heartbeatSeconds
        self.publisherID = publisherID
    }

    /// `<topic>.sample`: the routing key, and the name of the queue the notification agent reads.
    package var routingKey: String { CeilometerAMQP.routingKey(topic: topic) }

    /// Every node, `url` first.
    package var nodes: [AMQPURL] { [url] + failoverNodes }

    /// Whether the exchange and the queue are declared durable: asked for, or implied by a quorum queue.
    var durable: Bool { durableExchange || quorumQueue }
}

/// Publishes samples to a RabbitMQ exchange as ceilometer's polling agent does: oslo.messaging 2.0 envelopes, one
/// per record (the batch size is chosen where records are made), persistent, with publisher confirms waited for in
/// windows.
///
/// The connection lives on a serial dispatch queue of its own and is only touched there; `publish` suspends the
/// caller while that queue does the blocking work, so the cooperative pool never blocks. It connects on first use,
/// and again after any failure. A timer on the same queue services heartbeats between publishes.
package final class AMQPPublisher: Publisher {
    /// The settings in use.
    package let configuration: AMQPPublisherConfiguration
    private let logger: Logger
    private let queue: DispatchQueue
    private let link: PublisherLink
    private let buffers = BodyBuffers()

    /// A publisher for `configuration`; nothing connects until `connect()` or the first `publish`.
    package init(configuration: AMQPPublisherConfiguration, logger: Logger = Logger(label: "virtmeter.amqp")) {
        self.configuration = configuration
        self.logger = logger
        queue = DispatchQueue(label: "virtmeter.amqp.publisher")
        link = PublisherLink(configuration: configuration, logger: logger, queue: queue)
    }

    /// Connects now (declaring the exchange and queue) instead of at the first publish.
    package func connect() async throws(AMQPError) {
        let link = self.link
        try await onQueue { () throws(AMQPError) in _ = try link.connection() }
    }

    /// Publishes each record as one message and returns once the broker confirmed all of them. The samples' bytes
    /// go out as they are, escaped into the envelope in one pass. Throws `AMQPError` when nothing could be sent
    /// (connecting or declaring failed), and `AMQPUnconfirmedError` naming the records that were nacked or lost with
    /// the connection.
    package func publish(_ records: SampleRecords) async throws {
        guard !records.spans.isEmpty else { return }
        let publisherID = configuration.publisherID
        let failure = try await send(count: records.spans.count) { index, body in
            NotificationEnvelope.writeSampleBody(records.payload(index), publisherID: publisherID, to: &body)
        }
        if let (failed, reason) = failure {
            let samples = failed.reduce(0) { $0 + records.spans[$1].samples }
            // The caller decides what an undelivered batch means (the agent retries it from its spool and logs the
            // outage once), so this is only a debug line.
            logger.debug("samples not confirmed by the broker", metadata: [
                "virtmeter.amqp.samples": "\(samples)", "virtmeter.amqp.total": "\(records.sampleCount)",
                "virtmeter.amqp.reason": "\(reason)",
            ])
            throw AMQPUnconfirmedError(records: failed, samples: samples, total: records.spans.count, reason: reason)
        }
    }

    /// Publishes bodies as they are, with confirms (for tests that need malformed messages on the bus).
    func publish(rawBodies: [[UInt8]]) async throws {
        if let (_, reason) = try await send(count: rawBodies.count, body: { $1 = rawBodies[$0] }) { throw reason }
    }

    /// Encodes `count` messages with `body` (which writes message `index` over the buffer it is given) on the
    /// caller's thread, a chunk at a time, while the connection's queue publishes the chunks before (a pipeline:
    /// encoding overlaps sending and the broker's work), then waits for the remaining confirms. The buffers of the
    /// chunks sent come back for the next ones. Returns the indexes not confirmed and why, or nil.
    private func send(count: Int, body: (_ index: Int, _ buffer: inout [UInt8]) -> Void)
        async throws(AMQPError) -> (failed: [Int], reason: AMQPError)? {
        let link = self.link, buffers = self.buffers
        let run = try await onQueue { () throws(AMQPError) in try link.begin() }
        let chunk = 16
        for start in stride(from: 0, to: count, by: chunk) {
            let bodies = buffers.take(min(chunk, count - start))
            for offset in bodies.buffers.indices { body(start + offset, &bodies.buffers[offset]) }
            queue.async {
                link.send(bodies.buffers, firstIndex: start, run: run)
                buffers.giveBack(bodies)
            }
        }
        return try await onQueue { () throws(AMQPError) in link.finish(run) }
    }

    /// Deletes the `<topic>.sample` queue (for benchmarks and tests that made their own topic).
    package func deleteQueue() async throws(AMQPError) {
        let link = self.link
        try await onQueue { () throws(AMQPError) in try link.connection().deleteQueue(link.queueName) }
    }

    /// Closes the connection (it reopens on the next publish).
    package func close() async {
        let link = self.link
        try? await onQueue { () throws(AMQPError) in link.disconnect() }
    }

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws(AMQPError) -> T)
        async throws(AMQPError) -> T {
        try await queue.run(body)
    }
}

/// The publisher's connection and heartbeat timer.
///
/// `@unchecked Sendable` because it holds a non-Sendable C connection: every method is called only on `queue`
/// (the publisher's closures and the timer's handler run there, one at a time), so it is never used concurrently.
final class PublisherLink: @unchecked Sendable {
    private let configuration: AMQPPublisherConfiguration
    private let logger: Logger
    private let queue: DispatchQueue
    private var current: AMQPConnection?
    /// The broker's nodes in the order they are tried (shuffled once at start when configured).
    private let nodes: [AMQPURL]
    /// The node the next connection tries first.
    private var nodeIndex = 0
    /// The node of the last connection made, to log a switch to another one.
    private var connectedIndex: Int?
    /// Nodes found unreachable and not connected since (each is logged once).
    private var unreachable: Set<Int> = []
    private var timer: DispatchSourceTimer?
    /// The publish calls in flight (concurrent calls share the connection, so confirms go to all of them).
    private var runs: [PublishRun] = []
    /// Since when the broker has blocked this connection (its memory or disk alarm), if it has.
    private var blockedSince: Double?
    private let message: OutgoingMessage
    var queueName: String { configuration.routingKey }

    init(configuration: AMQPPublisherConfiguration, logger: Logger, queue: DispatchQueue) {
        self.configuration = configuration
        self.logger = logger
        self.queue = queue
        nodes = configuration.shuffleNodes ? configuration.nodes.shuffled() : configuration.nodes
        message = OutgoingMessage(exchange: configuration.exchange, routingKey: configuration.routingKey)
    }

    deinit {
        timer?.cancel()
    }

    /// The open connection, connecting (and declaring) first when there is none: to the current node, then, while
    /// nodes are unreachable, to the next ones in turn (each node at most once per call). A node that refuses
    /// (wrong password, a declaration that does not match) throws at once; the next call starts at the next node.
    func connection() throws(AMQPError) -> AMQPConnection {
        if let current {
            if current.isOpen { return current }
            self.current = nil
            if let connectedIndex { nodeIndex = (connectedIndex + 1) % nodes.count }
        }
        var lastError: AMQPError?
        for _ in nodes.indices {
            let index = nodeIndex, node = nodes[index]
            do {
                let connection = try open(node)
                unreachable.remove(index)
                if let connectedIndex, connectedIndex != index {
                    logger.notice("AMQP publisher switched to another node", metadata: [
                        "virtmeter.amqp.node": "\(node)",
                        "virtmeter.amqp.previous_node": "\(nodes[connectedIndex].endpoint)",
                    ])
                } else {
                    logger.info("connected to the AMQP broker", metadata: [
                        "virtmeter.amqp.url": "\(node)", "virtmeter.amqp.exchange": "\(configuration.exchange)",
                        "virtmeter.amqp.routing_key": "\(configuration.routingKey)",
                    ])
                }
                connectedIndex = index
                current = connection
                startHeartbeatTimer()
                return connection
            } catch {
                lastError = error
                nodeIndex = (nodeIndex + 1) % nodes.count
                guard error.isOutage, nodes.count > 1 else { throw error }
                // Logged once while the node stays unreachable; the lost connection itself is the caller's to log.
                if unreachable.insert(index).inserted {
                    logger.warning("AMQP node unreachable: trying the next one",
                                   metadata: ["virtmeter.amqp.node": "\(node)", "virtmeter.amqp.error": "\(error)"])
                }
            }
        }
        throw lastError ?? AMQPError(operation: "connect", message: "no broker node configured")
    }

    /// A connection to `node` in confirm mode, with the exchange (and queue) declared.
    private func open(_ node: AMQPURL) throws(AMQPError) -> AMQPConnection {
        let config = configuration
        let connection = try AMQPConnection(url: node)
        try connection.open(tls: config.tls, heartbeat: config.heartbeatSeconds, timeoutSeconds: config.timeoutSeconds)
        try connection.selectConfirms()
        do {
            try connection.declareExchange(config.exchange, durable: config.durable)
        } catch where error.isPreconditionFailed && config.quorumQueue {
            throw error.explained("the broker already has this exchange with other flags; quorum_queue needs a "
                                  + "durable exchange: turn quorum_queue off or delete the exchange")
        }
        guard config.declareQueue else { return connection }
        do {
            _ = try connection.declareQueue(config.routingKey, durable: config.durable,
                                            type: config.quorumQueue ? "quorum" : nil)
        } catch where error.isPreconditionFailed {
            let declared = config.quorumQueue ? "a quorum queue" : (config.durable ? "a durable classic queue"
                                                                   : "a classic queue, not durable")
            throw error.explained("the broker already has this queue with other arguments than \(declared); set "
                                  + "quorum_queue (and exchange_durable) to match it, or delete the queue "
                                  + "(\(error.message))")
        }
        try connection.bindQueue(config.routingKey, exchange: config.exchange, routingKey: config.routingKey)
        return connection
    }

    func disconnect() {
        timer?.cancel()
        timer = nil
        current = nil
    }

    /// Starts a publish: connects if needed (throwing when it cannot) and registers the run for confirms.
    func begin() throws(AMQPError) -> PublishRun {
        let run = PublishRun(connection: try connection())
        runs.append(run)
        return run
    }

    /// Publishes `bodies` (messages `firstIndex...` of `run`), waiting for confirms whenever a window is full.
    /// After a failure the run's remaining messages only count as failed.
    func send(_ bodies: [[UInt8]], firstIndex: Int, run: PublishRun) {
        guard run.failure == nil, let connection = current, connection === run.connection, connection.isOpen else {
            run.failure = run.failure ?? AMQPError(operation: "publish to exchange '\(configuration.exchange)'",
                                                   message: "connection lost")
            run.window.failed.formUnion(firstIndex..<(firstIndex + bodies.count))
            return
        }
        var offset = 0
        while offset < bodies.count {
            // As many messages at once as the window has room for.
            let count = min(bodies.count - offset, max(1, configuration.confirmWindow - run.window.outstandingCount))
            let status = withBytes(of: bodies[offset..<offset + count]) {
                connection.publish($0, as: message, timeoutSeconds: configuration.timeoutSeconds)
            }
            guard status == AMQP_STATUS_OK.rawValue else {
                fail(AMQPError.library(status, operation: "publish to exchange '\(configuration.exchange)'",
                                       message: "connection lost: " + String(cString: amqp_error_string2(status))))
                run.window.failed.formUnion((firstIndex + offset)..<(firstIndex + bodies.count))
                return
            }
            let firstTag = connection.lastDeliveryTag - UInt64(count) + 1
            for sent in 0..<count { run.window.sent(tag: firstTag + UInt64(sent), index: firstIndex + offset + sent) }
            offset += count
            if run.window.outstandingCount >= configuration.confirmWindow {
                wait(for: run, on: connection)
                if run.failure != nil {
                    run.window.failed.formUnion((firstIndex + offset)..<(firstIndex + bodies.count))
                    return
                }
            }
        }
    }

    /// Calls `body` with the bytes of every array in `arrays`, all valid at once.
    private func withBytes<R>(of arrays: ArraySlice<[UInt8]>, _ collected: [UnsafeRawBufferPointer] = [],
                              _ body: ([UnsafeRawBufferPointer]) -> R) -> R {
        guard let first = arrays.first else { return body(collected) }
        return first.withUnsafeBytes { withBytes(of: arrays.dropFirst(), collected + [$0], body) }
    }

    /// Ends a run: waits for its remaining confirms. Returns the indexes not confirmed and why, or nil.
    func finish(_ run: PublishRun) -> (failed: [Int], reason: AMQPError)? {
        if run.failure == nil, let connection = current, connection === run.connection {
            wait(for: run, on: connection)
        }
        run.window.failAll()
        runs.removeAll { $0 === run }
        guard !run.window.failed.isEmpty else {
            logger.debug("messages confirmed", metadata: ["virtmeter.amqp.node": "\(run.connection.url.endpoint)"])
            return nil
        }
        if run.failure == nil, current === run.connection {
            // Nacked: the queue could not take them. A channel opened while a quorum queue elected its new leader
            // keeps nacking (RabbitMQ 3.10, measured by ClusterTests): the retry gets a new connection, on the next
            // node.
            logger.debug("the broker nacked messages: reconnecting for the retry",
                         metadata: ["virtmeter.amqp.node": "\(run.connection.url.endpoint)"])
            fail(AMQPError(operation: "publish to exchange '\(configuration.exchange)'",
                           message: "the broker nacked the messages"))
        }
        let reason = run.failure ?? AMQPError(operation: "publish to exchange '\(configuration.exchange)'",
                                              message: "the broker nacked the messages")
        return (run.window.failed.sorted(), reason)
    }

    /// Waits until every message of `run` is acked or nacked; the confirms of other runs in flight are recorded on
    /// the way. A lost connection or a timeout fails every run's outstanding messages. While the broker blocks the
    /// connection no timeout runs: a new connection would only be blocked too, and left behind on the broker.
    private func wait(for run: PublishRun, on connection: AMQPConnection) {
        let timeout = UInt64(configuration.timeoutSeconds * 1e9)
        var deadline = DispatchTime.now().uptimeNanoseconds + timeout
        while run.window.outstandingCount > 0 {
            let now = DispatchTime.now().uptimeNanoseconds
            if blockedSince != nil { deadline = now + timeout }
            guard now < deadline else {
                fail(AMQPError(operation: "wait for publisher confirms",
                               message: "no confirm within \(configuration.timeoutSeconds) s"))
                return
            }
            do {
                record(try connection.nextEvent(timeoutSeconds: Double(deadline - now) / 1e9))
            } catch {
                fail(error)
                return
            }
        }
    }

    /// Gives an ack or nack to every run in flight (each takes the tags that are its own); notes the broker blocking
    /// and unblocking the connection, logged once each way.
    private func record(_ event: AMQPConnection.Event) {
        switch event {
        case .ack(let tag, let multiple): runs.forEach { $0.window.confirm(tag: tag, multiple: multiple, ok: true) }
        case .nack(let tag, let multiple): runs.forEach { $0.window.confirm(tag: tag, multiple: multiple, ok: false) }
        case .blocked(let reason):
            guard blockedSince == nil else { return }
            blockedSince = SampleClock.monotonic()
            logger.warning("the broker blocks publishing: samples wait in the spool until it takes them again",
                           metadata: ["virtmeter.amqp.reason": "\(reason)"])
        case .unblocked:
            guard let since = blockedSince else { return }
            blockedSince = nil
            logger.notice("the broker takes samples again", metadata: [
                "virtmeter.amqp.blocked_seconds": "\(String(format: "%.1f", SampleClock.monotonic() - since))",
            ])
        case .timeout, .other: break
        }
    }

    /// The connection is unusable: every run in flight fails its outstanding messages, and the next publish
    /// reconnects (a new connection starts unblocked).
    private func fail(_ error: AMQPError) {
        blockedSince = nil
        // A lost connection moves on to the next node (round robin).
        if current != nil, let connectedIndex { nodeIndex = (connectedIndex + 1) % nodes.count }
        for run in runs {
            run.window.failAll()
            if run.failure == nil { run.failure = error }
        }
        current = nil
        timer?.cancel()
        timer = nil
    }

    /// Services heartbeats while idle: every half heartbeat interval, reads (and answers) whatever the broker sent.
    private func startHeartbeatTimer() {
        timer?.cancel()
        timer = nil
        guard configuration.heartbeatSeconds > 0 else { return }
        let interval = DispatchTimeInterval.milliseconds(max(250, configuration.heartbeatSeconds * 500))
        let source = DispatchSource.makeTimerSource(queue: queue)
        source.schedule(deadline: .now() + interval, repeating: interval)
        source.setEventHandler { [weak self] in self?.serviceHeartbeats() }
        source.resume()
        timer = source
    }

    /// Reads whatever the broker sent (answering heartbeats); confirms that arrive here go to the runs in flight.
    private func serviceHeartbeats() {
        guard let current, current.isOpen else { return }
        do {
            while true {
                let event = try current.nextEvent(timeoutSeconds: 0)
                if case .timeout = event { return }
                record(event)
            }
        } catch {
            logger.warning("AMQP connection lost while idle; reconnecting at the next publish",
                           metadata: ["virtmeter.amqp.error": "\(error)"])
            fail(error)
        }
    }
}

/// One publish call in flight on the link.
///
/// `@unchecked Sendable` because the caller hands it to the link's queue: it is created, read and changed only on
/// that serial queue.
final class PublishRun: @unchecked Sendable {
    /// The connection the run started on; a reconnect in between fails the rest of the run.
    let connection: AMQPConnection
    var window = ConfirmWindow()
    var failure: AMQPError?

    init(connection: AMQPConnection) { self.connection = connection }
}

/// The messages of one publish call: which are awaiting a confirm (by delivery tag) and which failed.
struct ConfirmWindow {
    /// Delivery tags sent and not yet confirmed, ascending, with the message's index in the call.
    private var outstanding: [(tag: UInt64, index: Int)] = []
    /// Indexes of the messages nacked, lost or never sent.
    var failed: Set<Int> = []

    var outstandingCount: Int { outstanding.count }

    mutating func sent(tag: UInt64, index: Int) { outstanding.append((tag, index)) }

    mutating func confirm(tag: UInt64, multiple: Bool, ok: Bool) {
        if multiple {
            let end = outstanding.firstIndex { $0.tag > tag } ?? outstanding.endIndex
            if !ok { failed.formUnion(outstanding[..<end].map(\.index)) }
            outstanding.removeSubrange(..<end)
        } else if let position = outstanding.firstIndex(where: { $0.tag == tag }) {
            if !ok { failed.insert(outstanding[position].index) }
            outstanding.remove(at: position)
        }
    }

    /// Every outstanding message failed (the connection is gone).
    mutating func failAll() {
        failed.formUnion(outstanding.map(\.index))
        outstanding.removeAll()
    }
}

/// The message buffers the publisher writes bodies into: those of a chunk once sent are kept (up to `limit`) for the
/// next chunk, since a body is a record's payload and more (~100 KB), and new memory costs a page fault per 4 KB.
final class BodyBuffers: Sendable {
    /// A chunk's buffers, handed from the encoding thread to the connection's queue and back.
    final class Chunk: @unchecked Sendable {
        /// Written by the encoder, then read on the connection's queue: never by both at once.
        var buffers: [[UInt8]]
        init(_ buffers: [[UInt8]]) { self.buffers = buffers }
    }

    private let spare = Mutex<[[UInt8]]>([])
    private let limit = 64

    /// `count` buffers, kept ones first, then new ones.
    func take(_ count: Int) -> Chunk {
        Chunk(spare.withLock { spare in (0..<count).map { _ in spare.popLast() ?? [] } })
    }

    /// Keeps `chunk`'s buffers for the next `take`: moved out of the chunk while the lock is held, so that a buffer
    /// taken again is only referenced there, and written in place.
    func giveBack(_ chunk: Chunk) {
        spare.withLock { spare in
            while let buffer = chunk.buffers.popLast(), spare.count < limit { spare.append(buffer) }
            chunk.buffers.removeAll()
        }
    }
}

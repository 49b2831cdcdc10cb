import Dispatch
import Logging
import VirtMeterCore

/// One message as a consumer received it.
package struct AMQPDelivery: Sendable {
    /// The message body (an oslo.messaging envelope for notifications).
    package var body: [UInt8]
    /// The exchange it was published to.
    package var exchange: String
    /// The routing key it was published with.
    package var routingKey: String
    /// The broker's delivery tag on the consumer's channel.
    package var deliveryTag: UInt64
    /// Its basic properties.
    package var properties: AMQPProperties
}

/// What `AMQPConsumer` reads.
package struct AMQPConsumerConfiguration: Sendable {
    /// The broker and credentials.
    package var url: AMQPURL
    /// TLS settings, used when `url` is `amqps`.
    package var tls: AMQPTLSOptions
    /// The exchange to bind to (declared with `durableExchange` unless it exists).
    package var exchange: String
    /// Whether the exchange is declared durable; must match an existing exchange.
    package var durableExchange: Bool
    /// The routing key to bind with (`notifications.sample`).
    package var routingKey: String
    /// A queue to read instead of binding an exclusive auto-delete queue of its own (it must exist).
    package var queue: String?
    /// How long connecting may take, in seconds.
    package var timeoutSeconds: Double
    /// AMQP heartbeat in seconds (0: none); serviced while waiting for messages.
    package var heartbeatSeconds: Int

    /// A consumer of `routingKey` on `exchange` (by default ceilometer's samples), or of `queue`.
    package init(url: AMQPURL, tls: AMQPTLSOptions = AMQPTLSOptions(), exchange: String = CeilometerAMQP.exchange,
                durableExchange: Bool = CeilometerAMQP.durableExchange,
                routingKey: String = CeilometerAMQP.routingKey(topic: CeilometerAMQP.topic), queue: String? = nil,
                timeoutSeconds: Double = 10, heartbeatSeconds: Int = CeilometerAMQP.heartbeatSeconds) {
        self.url = url
        self.tls = tls
        self.exchange = exchange
        self.durableExchange = durableExchange
        self.routingKey = routingKey
        self.queue = queue
        self.timeoutSeconds = timeoutSeconds
        self.heartbeatSeconds = heartbeatSeconds
    }
}

/// Reads messages from the broker: from an exclusive auto-delete queue of its own bound to the exchange, or from a
/// named queue. Messages are taken without acks (a viewer, like `amqp-consume -A`).
///
/// The connection lives on a serial dispatch queue of its own; `next` suspends the caller while that queue blocks
/// in librabbitmq, which services heartbeats as it waits.
package final class AMQPConsumer: Sendable {
    /// The settings in use.
    package let configuration: AMQPConsumerConfiguration
    private let queue = DispatchQueue(label: "virtmeter.amqp.consumer")
    private let link: ConsumerLink

    /// A consumer for `configuration`; call `connect()` before `next`.
    package init(configuration: AMQPConsumerConfiguration, logger: Logger = Logger(label: "virtmeter.amqp")) {
        self.configuration = configuration
        link = ConsumerLink(configuration: configuration, logger: logger)
    }

    /// Connects, declares and binds, and starts consuming. Returns the name of the queue it reads.
    package func connect() async throws(AMQPError) -> String {
        let link = self.link
        return try await onQueue { () throws(AMQPError) in try link.connect() }
    }

    /// The next message, or nil when none came within `timeoutSeconds`. Throws `AMQPError` when the connection is
    /// lost or the broker closes the channel.
    package func next(timeoutSeconds: Double) async throws(AMQPError) -> AMQPDelivery? {
        let link = self.link
        return try await onQueue { () throws(AMQPError) in try link.next(timeoutSeconds: timeoutSeconds) }
    }

    /// Closes the connection.
    package func close() async {
        let link = self.link
        try? await onQueue { () throws(AMQPError) in link.close() }
    }

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws(AMQPError) -> T)
        async throws(AMQPError) -> T {
        try await queue.run(body)
    }
}

/// The consumer's connection.
///
/// `@unchecked Sendable` because it holds a non-Sendable C connection: `AMQPConsumer` calls it only from its own
/// serial queue, so it is never used concurrently.
final class ConsumerLink: @unchecked Sendable {
    private let configuration: AMQPConsumerConfiguration
    private let logger: Logger
    private var connection: AMQPConnection?

    init(configuration: AMQPConsumerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    func connect() throws(AMQPError) -> String {
        let config = configuration
        let connection = try AMQPConnection(url: config.url)
        try connection.open(tls: config.tls, heartbeat: config.heartbeatSeconds, timeoutSeconds: config.timeoutSeconds)
        let name: String
        if let queue = config.queue {
            name = try connection.declareQueue(queue, passive: true)
        } else {
            try connection.declareExchange(config.exchange, durable: config.durableExchange)
            name = try connection.declareQueue("", exclusive: true, autoDelete: true)
            try connection.bindQueue(name, exchange: config.exchange, routingKey: config.routingKey)
        }
        try connection.consume(name, noAck: true, exclusive: false)
        self.connection = connection
        logger.info("consuming from the AMQP broker", metadata: [
            "virtmeter.amqp.url": "\(config.url)", "virtmeter.amqp.queue": "\(name)",
        ])
        return name
    }

    func next(timeoutSeconds: Double) throws(AMQPError) -> AMQPDelivery? {
        guard let connection, connection.isOpen else {
            throw AMQPError(operation: "consume", message: "not connected")
        }
        return try connection.nextDelivery(timeoutSeconds: timeoutSeconds)
    }

    func close() { connection = nil }
}

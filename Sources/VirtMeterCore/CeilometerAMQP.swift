/// How ceilometer's polling agent routes samples over AMQP (oslo.messaging's notifier with its defaults): the one
/// definition that virtmeter.yaml, the command-line options, the publisher and the consumer take their defaults from.
package enum CeilometerAMQP {
    /// The exchange samples go to, a topic exchange (ceilometer's `control_exchange`).
    package static let exchange = "ceilometer"
    /// Whether the exchange (and a classic `<topic>.sample` queue) is declared durable: ceilometer's is not
    /// (oslo's `amqp_durable_queues` is off). It must match what the broker already has.
    package static let durableExchange = false
    /// The notification topic (oslo's `[oslo_messaging_notifications] topics`).
    package static let topic = "notifications"
    /// The AMQP heartbeat in seconds (oslo's `heartbeat_timeout_threshold`).
    package static let heartbeatSeconds = 60

    /// `<topic>.sample`: the routing key of samples, and the name of the queue the notification agent reads.
    package static func routingKey(topic: String) -> String { topic + ".sample" }
}

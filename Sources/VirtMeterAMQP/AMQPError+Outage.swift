import CRabbitMQ

extension AMQPError {
    /// Whether the broker could not be reached or the connection dropped (refused, reset, timed out, closed), as
    /// opposed to a broker that answered no (wrong password, unknown vhost, exchange mismatch, bad certificate).
    /// An outage is worth waiting out with the spool; a refusal needs the operator.
    package var isOutage: Bool {
        let outages: [amqp_status_enum] = [
            AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED, AMQP_STATUS_CONNECTION_CLOSED, AMQP_STATUS_SOCKET_ERROR,
            AMQP_STATUS_TIMEOUT, AMQP_STATUS_HEARTBEAT_TIMEOUT, AMQP_STATUS_SOCKET_CLOSED, AMQP_STATUS_TCP_ERROR,
        ]
        // 320 CONNECTION_FORCED: the broker is shutting down or an operator closed the connection.
        return outages.contains { Int($0.rawValue) == code } || code == 320
    }
}

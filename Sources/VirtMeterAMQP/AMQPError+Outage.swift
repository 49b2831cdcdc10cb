import CRabbitMQ

extension AMQPError {
    /// Whether the broker could not be reached or the connection dropped (refused, reset, timed out, closed), as
    /// opposed to a broker that answered no (wrong password, unknown vhost, exchange mismatch, bad certificate).
    /// An outage is worth waiting out with the spool; a refusal needs the operator.
    package var isOutage: Bool {
        switch kind {
        case .library:
            let outages: [amqp_status_enum] = [
                AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED, AMQP_STATUS_CONNECTION_CLOSED, AMQP_STATUS_SOCKET_ERROR,
                AMQP_STATUS_TIMEOUT, AMQP_STATUS_HEARTBEAT_TIMEOUT, AMQP_STATUS_SOCKET_CLOSED, AMQP_STATUS_TCP_ERROR,
            ]
            return outages.contains { $0.rawValue == libraryStatus }
        case .connectionClosed:
            // CONNECTION_FORCED: the broker is shutting down or an operator closed the connection.
            return replyCode == Int(AMQP_CONNECTION_FORCED)
        case .channelClosed, .client:
            return false
        }
    }

    /// Whether the broker closed the channel with 406 PRECONDITION_FAILED: a declaration that does not match what
    /// the broker already has (other flags or arguments).
    var isPreconditionFailed: Bool { kind == .channelClosed && replyCode == Int(AMQP_PRECONDITION_FAILED) }
}

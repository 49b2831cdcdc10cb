import VirtMeterCore

/// A broker operation that failed: what was being done, who said no (librabbitmq, the broker closing the channel or
/// the connection, or virtmeter itself), the code that came with it, and the message. Never carries a password.
///
/// AMQP reply codes (positive, from the broker) and librabbitmq statuses (negative, from the library) are kept apart:
/// `replyCode` is set only when the broker closed something, `libraryStatus` only when librabbitmq failed.
package struct AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Who reported the failure, which says which code is set.
    package enum Kind: Sendable, Equatable {
        /// librabbitmq returned a status (a socket, TLS or timeout failure, a lost connection): `libraryStatus`.
        case library
        /// The broker closed the channel (404 NOT_FOUND, 406 PRECONDITION_FAILED, ...): `replyCode`.
        case channelClosed
        /// The broker closed the connection (320 CONNECTION_FORCED, 403 ACCESS_REFUSED, ...): `replyCode`.
        case connectionClosed
        /// virtmeter found it (a bad URL, a nack, no confirm in time, an unexpected frame): no code.
        case client
    }

    /// Who reported the failure.
    package let kind: Kind
    /// What was being done ("connect to localhost:5672", "declare exchange 'ceilometer'").
    package let operation: String
    /// The broker's AMQP reply code (`channelClosed`, `connectionClosed`), else nil.
    package let replyCode: Int?
    /// librabbitmq's status, an `amqp_status_enum` (`library`), else nil.
    package let libraryStatus: Int32?
    /// What went wrong, in words.
    package let message: String

    /// An error virtmeter found itself, for `operation`.
    package init(operation: String, message: String) {
        self.init(kind: .client, operation: operation, replyCode: nil, libraryStatus: nil, message: message)
    }

    /// librabbitmq's `status` for `operation`.
    static func library(_ status: Int32, operation: String, message: String) -> AMQPError {
        AMQPError(kind: .library, operation: operation, replyCode: nil, libraryStatus: status, message: message)
    }

    /// The broker closed the channel (`connection` false) or the connection with `replyCode`.
    static func closed(connection: Bool, replyCode: Int, operation: String, message: String) -> AMQPError {
        AMQPError(kind: connection ? .connectionClosed : .channelClosed, operation: operation, replyCode: replyCode,
                  libraryStatus: nil, message: message)
    }

    private init(kind: Kind, operation: String, replyCode: Int?, libraryStatus: Int32?, message: String) {
        self.kind = kind
        self.operation = operation
        self.replyCode = replyCode
        self.libraryStatus = libraryStatus
        self.message = message
    }

    /// The same failure explained by `message` (what to change), its kind and codes kept.
    func explained(_ message: String) -> AMQPError {
        AMQPError(kind: kind, operation: operation, replyCode: replyCode, libraryStatus: libraryStatus,
                  message: message)
    }

    /// One line: `AMQP <operation>: <message>`.
    package var description: String { "AMQP \(operation): \(message)" }
}

/// Messages that the broker did not confirm: a nack, a closed channel or a lost connection. The caller may retry
/// them; nothing about them is known to be delivered.
package struct AMQPUnconfirmedError: Error, Sendable, CustomStringConvertible {
    /// The indexes of the records (one message each) that were not confirmed, ascending.
    package var records: [Int]
    /// The samples in those records.
    package var samples: Int
    /// How many records `publish` was given.
    package var total: Int
    /// Why they were not confirmed.
    package var reason: AMQPError

    package init(records: [Int], samples: Int, total: Int, reason: AMQPError) {
        self.records = records
        self.samples = samples
        self.total = total
        self.reason = reason
    }

    /// One line naming how many messages and samples were not confirmed, and why.
    package var description: String {
        "\(records.count) of \(total) messages (\(samples) samples) not confirmed by the broker: \(reason)"
    }
}

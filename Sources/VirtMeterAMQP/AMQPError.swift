import VirtMeterCore

/// A broker operation that failed: what was being done, the AMQP reply code or library status, and the message.
/// Never carries a password.
public struct AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was being done ("connect to localhost:5672", "declare exchange 'ceilometer'").
    public var operation: String
    /// The AMQP reply code (403, 404, 406, ...) or librabbitmq's negative status; 0 when neither applies.
    public var code: Int
    /// What went wrong, in words.
    public var message: String

    /// An error for `operation` with `code` and `message`.
    public init(operation: String, code: Int = 0, message: String) {
        self.operation = operation
        self.code = code
        self.message = message
    }

    /// One line: `AMQP <operation>: <message>`.
    public var description: String { "AMQP \(operation): \(message)" }
}

/// Samples that the broker did not confirm: a nack, a closed channel or a lost connection. The caller may retry
/// them; nothing about them is known to be delivered.
public struct AMQPUnconfirmedError: Error, Sendable, CustomStringConvertible {
    /// The samples of every batch that was not confirmed, in the order they were given.
    public var samples: [Sample]
    /// How many samples `publish` was given.
    public var total: Int
    /// Why they were not confirmed.
    public var reason: AMQPError

    /// An error for `samples` out of `total`, because of `reason`.
    public init(samples: [Sample], total: Int, reason: AMQPError) {
        self.samples = samples
        self.total = total
        self.reason = reason
    }

    /// One line naming how many and which samples (their message ids, abbreviated) were not confirmed, and why.
    public var description: String {
        let ids = samples.map(\.messageID)
        let shown = ids.count <= 3 ? ids.joined(separator: ", ")
            : "\(ids[0]), \(ids[1]) ... \(ids[ids.count - 1])"
        return "\(samples.count) of \(total) samples not confirmed by the broker (message_id \(shown)): \(reason)"
    }
}

import VirtMeterCore

/// A broker operation that failed: what was being done, the AMQP reply code or library status, and the message.
/// Never carries a password.
package struct AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was being done ("connect to localhost:5672", "declare exchange 'ceilometer'").
    package var operation: String
    /// The AMQP reply code (403, 404, 406, ...) or librabbitmq's negative status; 0 when neither applies.
    package var code: Int
    /// What went wrong, in words.
    package var message: String

    /// An error for `operation` with `code` and `message`.
    package init(operation: String, code: Int = 0, message: String) {
        self.operation = operation
        self.code = code
        self.message = message
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

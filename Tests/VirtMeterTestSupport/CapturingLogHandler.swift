import Logging
import Synchronization

/// A log handler that keeps what was logged, for tests that assert on log lines.
package struct CapturingLogHandler: LogHandler {
    /// The captured events, shared by every handler made with it.
    package final class Store: Sendable {
        package let lines = Mutex<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])

        package init() {}

        /// Everything logged so far.
        package var all: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { lines.withLock { $0 } }

        /// How many times `message` was logged.
        package func count(_ message: String) -> Int { lines.withLock { $0.filter { $0.message == message }.count } }

        /// The metadata of each time `message` was logged.
        package func metadata(_ message: String) -> [Logger.Metadata] {
            lines.withLock { $0.filter { $0.message == message }.map(\.metadata) }
        }
    }

    package let store: Store
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .trace

    package init(store: Store) { self.store = store }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        store.lines.withLock { $0.append((event.level, event.message.description, event.metadata ?? [:])) }
    }
}

/// A logger whose lines land in the returned store.
package func capturingLogger(_ label: String = "test") -> (Logger, CapturingLogHandler.Store) {
    let store = CapturingLogHandler.Store()
    return (Logger(label: label) { _ in CapturingLogHandler(store: store) }, store)
}

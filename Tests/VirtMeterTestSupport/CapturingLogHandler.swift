import Logging
import Synchronization

/// A log handler that keeps what was logged, for tests that assert on log lines.
public struct CapturingLogHandler: LogHandler {
    /// The captured events, shared by every handler made with it.
    public final class Store: Sendable {
        public let lines = Mutex<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])

        public init() {}

        /// Everything logged so far.
        public var all: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { lines.withLock { $0 } }

        /// How many times `message` was logged.
        public func count(_ message: String) -> Int { lines.withLock { $0.filter { $0.message == message }.count } }

        /// The metadata of each time `message` was logged.
        public func metadata(_ message: String) -> [Logger.Metadata] {
            lines.withLock { $0.filter { $0.message == message }.map(\.metadata) }
        }
    }

    public let store: Store
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public init(store: Store) { self.store = store }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        store.lines.withLock { $0.append((event.level, event.message.description, event.metadata ?? [:])) }
    }
}

/// A logger whose lines land in the returned store.
public func capturingLogger(_ label: String = "test") -> (Logger, CapturingLogHandler.Store) {
    let store = CapturingLogHandler.Store()
    return (Logger(label: label) { _ in CapturingLogHandler(store: store) }, store)
}

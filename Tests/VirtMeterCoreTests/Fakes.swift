import Foundation
import Logging
import Synchronization
@testable import VirtMeterCore

/// A hypervisor that returns scripted snapshots, one list per poll.
final class FakeHypervisor: Hypervisor {
    private let script: Mutex<[[DomainSnapshot]]>
    init(_ polls: [[DomainSnapshot]]) { script = Mutex(polls) }
    func poll() async throws -> [DomainSnapshot] {
        script.withLock { $0.isEmpty ? [] : $0.removeFirst() }
    }
}

/// A log handler that keeps what was logged, for asserting on warnings.
struct CapturingLogHandler: LogHandler {
    final class Store: Sendable {
        let lines = Mutex<[(Logger.Level, String, Logger.Metadata)]>([])
        var all: [(Logger.Level, String, Logger.Metadata)] { lines.withLock { $0 } }
    }
    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        store.lines.withLock { $0.append((event.level, event.message.description, event.metadata ?? [:])) }
    }
}

func capturingLogger() -> (Logger, CapturingLogHandler.Store) {
    let store = CapturingLogHandler.Store()
    return (Logger(label: "test") { _ in CapturingLogHandler(store: store) }, store)
}

func snapshot(uuid: String = "a6b2c4d8-1234-4e5f-9abc-def012345678", vcpus: Int = 2, cpu: UInt64? = 0,
              at time: Double = 0, balloon: BalloonStats = BalloonStats(), nova: NovaMetadata? = nil) -> DomainSnapshot {
    DomainSnapshot(uuid: uuid, name: "instance-1", vcpuCount: vcpus, cpuTime: cpu, maxMemoryKiB: 2_097_152,
                   memoryKiB: 2_097_152, balloon: balloon, nova: nova, monotonicTime: time)
}

func fixture(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"))
    return try String(contentsOf: url, encoding: .utf8)
}

import Testing

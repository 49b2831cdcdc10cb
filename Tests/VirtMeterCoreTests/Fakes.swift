import Foundation
import Logging
import Synchronization
import VirtMeterTestSupport
@testable import VirtMeterCore

/// A hypervisor that returns scripted snapshots, one list per poll.
final class FakeHypervisor: Hypervisor {
    private let script: Mutex<[[DomainSnapshot]]>
    init(_ polls: [[DomainSnapshot]]) { script = Mutex(polls) }
    func poll() async throws -> [DomainSnapshot] {
        script.withLock { $0.isEmpty ? [] : $0.removeFirst() }
    }
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

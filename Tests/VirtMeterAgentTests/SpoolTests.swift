import Foundation
import Logging
import Testing
import VirtMeterCore
@testable import VirtMeterAgent

/// Samples with distinct message ids and volumes, as a cycle makes them.
func makeSamples(_ count: Int, from start: Int = 0) -> [Sample] {
    (start..<start + count).map { i in
        var sample = Sample(source: "openstack", name: "cpu", type: .cumulative, unit: "ns", volume: .int(Int64(i)),
                            userID: "u", projectID: "p", resourceID: "r-\(i)", timestamp: "2026-11-27T00:00:00.000000",
                            resourceMetadata: .object([("display_name", .string("vm")), ("cpu_number", .int(2))]),
                            messageID: "id-\(i)", monotonicTime: Double(i) + 0.25)
        sample.sign(with: SampleSigner(secret: "s"))
        return sample
    }
}

func openSpool(_ directory: URL, capBytes: Int = 256 << 20, perRecord: Int = 10) throws -> Spool {
    try Spool(configuration: SpoolConfiguration(directory: directory.path, capBytes: capBytes, samplesPerRecord: perRecord),
              logger: Logger(label: "test"))
}

/// Reads and acknowledges everything the spool has, in order.
func drainSpool(_ spool: Spool) async -> [Sample] {
    var samples: [Sample] = []
    while spool.hasUnread, let batch = await spool.next(maxRecords: 7) {
        samples += batch.samples
        await spool.acknowledge(batch)
    }
    return samples
}

@Suite("the durable spool")
struct SpoolTests {
    @Test("what goes in comes out in order, unchanged, signatures intact")
    func roundTrip() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spool = try openSpool(directory)
        let samples = makeSamples(95)
        try await spool.append(Array(samples[0..<40]))
        try await spool.append(Array(samples[40...]))
        #expect(spool.currentCounters.pendingRecords == 10)   // 4 + 6 records of at most 10 samples
        let out = await drainSpool(spool)
        #expect(out.map(\.messageID) == samples.map(\.messageID))
        #expect(zip(out, samples).allSatisfy { $0.json == $1.json })
        #expect(out.allSatisfy { SampleSigner(secret: "s").verify($0.json) })
        #expect(spool.currentCounters.pendingRecords == 0)
    }

    @Test("a crash before the acknowledgement: on start, what was left comes first, in order")
    func survivesCrash() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let spool = try openSpool(directory)
            try await spool.append(makeSamples(30))
            let first = try #require(await spool.next(maxRecords: 1))
            await spool.acknowledge(first)                      // 10 delivered
            _ = await spool.next(maxRecords: 1)                 // 10 handed out, never acknowledged: "in flight"
        }   // the process dies here
        let reopened = try openSpool(directory)
        #expect(reopened.currentCounters.pendingRecords == 2)
        try await reopened.append(makeSamples(5, from: 100))
        let out = await drainSpool(reopened)
        #expect(out.map(\.messageID) == (10..<30).map { "id-\($0)" } + (100..<105).map { "id-\($0)" })
        // Nothing is left once everything is acknowledged, even across another restart.
        #expect(try openSpool(directory).currentCounters.pendingRecords == 0)
    }

    @Test("full: the oldest records are dropped and counted, the newest kept")
    func capacity() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spool = try openSpool(directory, capBytes: 256 << 10)   // segments of 64 KiB
        for cycle in 0..<100 { try await spool.append(makeSamples(10, from: cycle * 10)) }   // about 400 KiB
        let counters = spool.currentCounters
        #expect(counters.droppedRecords > 0 && counters.droppedSamples == counters.droppedRecords * 10)
        #expect(counters.pendingBytes <= 256 << 10)
        let out = await drainSpool(spool)
        #expect(out.count + counters.droppedSamples == 1000)
        #expect(out.last?.messageID == "id-999")
        #expect(out.map(\.messageID) == (1000 - out.count..<1000).map { "id-\($0)" })
    }

    @Test("damaged records (flipped bytes, a cut-off tail) are skipped and counted; the records around them are kept")
    func corruption() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let spool = try openSpool(directory)
            for cycle in 0..<5 { try await spool.append(makeSamples(10, from: cycle * 10)) }
        }
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".seg") }.sorted().first)
        let file = directory.appendingPathComponent(segment)
        var bytes = [UInt8](try Data(contentsOf: file))
        // Records 0..4 of about equal size: flip bytes in the middle of the second, cut the fifth short.
        let recordSize = bytes.count / 5
        bytes[recordSize + recordSize / 2] ^= 0xFF
        bytes[recordSize + recordSize / 2 + 1] ^= 0x55
        bytes.removeLast(recordSize / 3)
        try Data(bytes).write(to: file)

        let reopened = try openSpool(directory)
        let out = await drainSpool(reopened)
        #expect(out.map(\.messageID) == ((0..<10).map { "id-\($0)" } + (20..<40).map { "id-\($0)" }))
        #expect(reopened.currentCounters.corruptRecords == 2)
    }

    @Test("next waits for an append, and returns nil once the spool is finished and drained")
    func waiting() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spool = try openSpool(directory)
        async let waited = spool.next(maxRecords: 10)
        try await Task.sleep(for: .milliseconds(100))
        try await spool.append(makeSamples(3))
        #expect(await waited?.samples.count == 3)
        spool.finish()
        #expect(await spool.next(maxRecords: 10) == nil)
    }
}

import Foundation
import Logging
import Testing
import VirtMeterCore
import VirtMeterTestSupport
@testable import VirtMeterAgent

/// Samples with distinct message ids and volumes, as a cycle makes them.
func makeSamples(_ count: Int, from start: Int = 0) -> [Sample] {
    (start..<start + count).map { i in
        Sample(source: "openstack", name: "cpu", type: .cumulative, unit: "ns", volume: .int(Int64(i)),
               userID: "u", projectID: "p", resourceID: "r-\(i)", timestamp: "2026-11-27T00:00:00.000000",
               resourceMetadata: .object([("display_name", .string("vm")), ("cpu_number", .int(2))]),
               messageID: "id-\(i)", monotonicTime: Double(i) + 0.25)
    }
}

/// Samples made into records of `perRecord`, signed with the secret "s".
func makeRecords(_ count: Int, from start: Int = 0, perRecord: Int = 10) -> SampleRecords {
    encodedRecords(makeSamples(count, from: start), signer: SampleSigner(secret: "s"), perRecord: perRecord)
}

/// Opens the spool in `directory`. A spool dropped just before may still hold the directory's lock for a moment (its
/// queue releases it after the last call returned), so a lock held by this very process is waited for, briefly.
func openSpool(_ directory: URL, capBytes: Int = 256 << 20) throws -> Spool {
    let configuration = SpoolConfiguration(directory: directory.path, capBytes: capBytes)
    for _ in 0..<100 {
        do {
            return try Spool(configuration: configuration, logger: Logger(label: "test"))
        } catch {
            guard case .locked(_, let holder) = error, holder == String(getpid()) else { throw error }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
    return try Spool(configuration: configuration, logger: Logger(label: "test"))
}

extension Spool {
    /// Writes and commits records, as one poll cycle does.
    func append(_ records: SampleRecords) async {
        await write(records)
        await commit()
    }
}

/// Reads and acknowledges everything the spool has, in order.
func drainSpool(_ spool: Spool) async throws -> [Sample] {
    var samples: [Sample] = []
    while spool.currentCounters.pendingRecords > 0, let batch = await spool.next(maxRecords: 7) {
        samples += try batch.records.decodedSamples()
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
        await spool.append(makeRecords(40))
        await spool.append(makeRecords(55, from: 40))
        #expect(spool.currentCounters.pendingRecords == 10)   // 4 + 6 records of at most 10 samples
        let out = try await drainSpool(spool)
        #expect(out.map(\.messageID) == samples.map(\.messageID))
        let signer = SampleSigner(secret: "s")
        #expect(zip(out, samples).allSatisfy { $0.oracleJSON == $1.oracleSigned(with: signer).oracleJSON })
        #expect(out.allSatisfy { signer.verify($0.oracleJSON) })
        #expect(spool.currentCounters.pendingRecords == 0)
    }

    @Test("a record's CRC is taken when it is sealed; read back, the records are the bytes written, headers and all")
    func sealedChecksum() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let written = makeRecords(40)
        for span in written.spans {
            let header = try #require(written.bytes.withUnsafeBytes { SampleRecords.header(in: $0, at: span.start) })
            let counted = ChecksumTests.crc(written.bytes[span.start + 8 ..< span.start + 12])
            #expect(header.checksum == ChecksumTests.crc(written.bytes[span.payload], from: counted))
        }
        let spool = try openSpool(directory)
        await spool.append(written)
        let segment = try #require(try Self.segments(directory).first)
        let tag = Spool.tag(try #require(UInt64(segment.deletingPathExtension().lastPathComponent)))
        let onDisk = [UInt8](try Data(contentsOf: segment))
        let first = try #require(onDisk.withUnsafeBytes { SampleRecords.header(in: $0, at: 0) })
        #expect(first.checksum ^ tag == written.bytes.withUnsafeBytes { SampleRecords.header(in: $0, at: 0) }?.checksum)
        var read: [UInt8] = []
        while let batch = await spool.next(maxRecords: 3) {
            for span in batch.records.spans { read += batch.records.bytes[span.record] }
            await spool.acknowledge(batch)
            if spool.currentCounters.pendingRecords == 0 { break }
        }
        let expected = written.spans.flatMap { written.bytes[$0.record] }
        let same = read == expected   // (compared apart: the bytes would fill the failure's message)
        #expect(same, "the records read back differ from those written (\(read.count) and \(expected.count) bytes)")
    }

    @Test("a crash before the acknowledgement: on start, what was left comes first, in order")
    func survivesCrash() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let spool = try openSpool(directory)
            await spool.append(makeRecords(30))
            let first = try #require(await spool.next(maxRecords: 1))
            await spool.acknowledge(first)                      // 10 delivered
            _ = await spool.next(maxRecords: 1)                 // 10 handed out, never acknowledged: "in flight"
        }   // the process dies here
        do {
            let reopened = try openSpool(directory)
            #expect(reopened.currentCounters.pendingRecords == 2)
            await reopened.append(makeRecords(5, from: 100))
            let out = try await drainSpool(reopened)
            #expect(out.map(\.messageID) == (10..<30).map { "id-\($0)" } + (100..<105).map { "id-\($0)" })
            // Nothing is left once everything is acknowledged, even across another restart.
        }
        #expect(try openSpool(directory).currentCounters.pendingRecords == 0)
    }

    @Test("full: the oldest records are dropped and counted, the newest kept")
    func capacity() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spool = try openSpool(directory, capBytes: 256 << 10)   // segments of 64 KiB
        for cycle in 0..<100 { await spool.append(makeRecords(10, from: cycle * 10)) }   // about 400 KiB
        let counters = spool.currentCounters
        #expect(counters.droppedRecords > 0 && counters.droppedSamples == counters.droppedRecords * 10)
        #expect(counters.pendingBytes <= 256 << 10)
        let out = try await drainSpool(spool)
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
            for cycle in 0..<5 { await spool.append(makeRecords(10, from: cycle * 10)) }
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
        let out = try await drainSpool(reopened)
        #expect(out.map(\.messageID) == ((0..<10).map { "id-\($0)" } + (20..<40).map { "id-\($0)" }))
        #expect(reopened.currentCounters.corruptRecords == 2)
    }

    /// The segment files in `directory`, by name.
    static func segments(_ directory: URL) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".seg") }.sorted()
            .map { directory.appendingPathComponent($0) }
    }

    /// Writes 60 samples and delivers them, then writes 15 more into the spare the first ones left (two records, of
    /// 10 and 5 samples, shorter than the first two), and returns the segment they are in, with the crash to follow.
    static func writeOverSpare(_ directory: URL) async throws -> URL {
        let spool = try openSpool(directory)
        await spool.append(makeRecords(60))
        #expect(try await drainSpool(spool).count == 60)
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("spare").path),
                "the delivered segment is kept to be written over")
        #expect(try segments(directory).isEmpty)
        await spool.append(makeRecords(15, from: 100))
        let segment = try #require(try segments(directory).first)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: segment.path)[.size] as? Int)
        #expect(size > makeRecords(60).bytes.count - 100, "the new segment is the spare, written over")
        return segment
    }

    @Test("a delivered segment is written over; after a crash only the new records come out, none counted as damaged")
    func spareWrittenOver() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try await Self.writeOverSpare(directory)   // and the process dies
        let reopened = try openSpool(directory)
        #expect(reopened.currentCounters.pendingRecords == 2)
        let out = try await drainSpool(reopened)
        #expect(out.map(\.messageID) == (100..<115).map { "id-\($0)" })
        #expect(reopened.currentCounters.corruptRecords == 0)
        // A segment an earlier run wrote is removed once delivered, never kept to be written over.
        #expect(try Self.segments(directory).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("spare").path))
    }

    @Test("a record cut short in a segment written over is skipped and counted once; the one before it comes out")
    func spareWithRecordCutShort() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let segment = try await Self.writeOverSpare(directory)
        var bytes = [UInt8](try Data(contentsOf: segment))
        // The second new record, as a crash mid-write leaves it: its end is still the old record's bytes.
        let first = try #require(bytes.withUnsafeBytes { SampleRecords.header(in: $0, at: 0) })
        let second = SampleRecords.headerBytes + first.payloadLength
        bytes[second + SampleRecords.headerBytes + 40] ^= 0xFF
        try Data(bytes).write(to: segment)
        let reopened = try openSpool(directory)
        let out = try await drainSpool(reopened)
        #expect(out.map(\.messageID) == (100..<110).map { "id-\($0)" })
        #expect(reopened.currentCounters.corruptRecords == 1)
    }

    @Test("records an earlier version wrote (their CRCs without the segment's tag) are read")
    func untaggedRecords() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let spool = try openSpool(directory)
            await spool.append(makeRecords(25))
        }
        let segment = try #require(try Self.segments(directory).first)
        let tag = Spool.tag(try #require(UInt64(segment.deletingPathExtension().lastPathComponent)))
        #expect(tag > 0)
        var bytes = [UInt8](try Data(contentsOf: segment))
        var offset = 0
        while let header = bytes.withUnsafeBytes({ SampleRecords.header(in: $0, at: offset) }) {
            withUnsafeBytes(of: (header.checksum ^ tag).littleEndian) {
                bytes.replaceSubrange(offset + 12..<offset + 16, with: $0)
            }
            offset += SampleRecords.headerBytes + header.payloadLength
        }
        #expect(offset == bytes.count)
        try Data(bytes).write(to: segment)
        let reopened = try openSpool(directory)
        #expect(try await drainSpool(reopened).map(\.messageID) == (0..<25).map { "id-\($0)" })
        #expect(reopened.currentCounters.corruptRecords == 0)
    }

    @Test("next waits for an append, and returns nil once the spool is finished and drained")
    func waiting() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spool = try openSpool(directory)
        async let waited = spool.next(maxRecords: 10)
        try await Task.sleep(for: .milliseconds(100))
        await spool.append(makeRecords(3))
        #expect(await waited?.records.sampleCount == 3)
        spool.finish()
        #expect(await spool.next(maxRecords: 10) == nil)
    }

    @Test("one agent per state directory: a second spool on it is refused, naming the directory and the holder")
    func lock() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try openSpool(directory)
        await first.append(makeRecords(10))
        #expect {
            _ = try Spool(configuration: SpoolConfiguration(directory: directory.path), logger: Logger(label: "test"))
        } throws: { error in
            "\(error)" == "\(directory.path) is in use by another virtmeter (pid \(getpid())); one agent per state "
                + "directory"
        }
        // The first one is unharmed.
        #expect(try await drainSpool(first).count == 10)
    }

    @Test("delivered records leave no segment at once (the file may stay as the spare), not when a segment rolls over")
    func spaceReturned() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spool = try openSpool(directory)
        func segmentBytes() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".seg") }
                .reduce(0) { total, name in
                    let size = try FileManager.default.attributesOfItem(
                        atPath: directory.appendingPathComponent(name).path)[.size] as? Int
                    return total + (size ?? 0)
                }
        }
        await spool.append(makeRecords(30))
        #expect(try segmentBytes() > 0)
        _ = try await drainSpool(spool)
        #expect(try segmentBytes() == 0)
        // And writing goes on after that, in order.
        await spool.append(makeRecords(5, from: 50))
        #expect(try await drainSpool(spool).map(\.messageID) == (50..<55).map { "id-\($0)" })
    }

    @Test("the spool is private whatever the umask: directory 0700, files 0600")
    func privateFiles() async throws {
        let parent = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: parent) }
        let directory = parent.appendingPathComponent("spool")
        let old = umask(0o022)
        defer { umask(old) }
        let spool = try openSpool(directory)
        await spool.append(makeRecords(3))
        func mode(_ path: String) throws -> Int {
            try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        }
        #expect(try mode(directory.path) == 0o700)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(files.contains("lock") && files.contains("head") && files.contains { $0.hasSuffix(".seg") })
        for file in files { #expect(try mode(directory.appendingPathComponent(file).path) == 0o600, "\(file)") }
    }
}

import Dispatch
import Foundation
import Logging
import VirtMeterCore

/// When the spool forces its writes to disk.
public enum FsyncPolicy: String, Sendable, CaseIterable {
    /// After every batch handed over by a poll cycle (the default): a crash or power loss loses nothing accepted.
    case batch
    /// Never explicitly: the kernel writes back within seconds; a crash of virtmeter alone still loses nothing.
    case never
}

/// Settings of the spool.
public struct SpoolConfiguration: Sendable, Equatable {
    public var directory: String
    /// Largest total size of the segment files; beyond it the oldest segments are dropped (counted, logged).
    public var capBytes: Int
    public var fsync: FsyncPolicy
    /// At most this many samples in one record (a record is what one published message carries).
    public var samplesPerRecord: Int

    public init(directory: String, capBytes: Int = 256 << 20, fsync: FsyncPolicy = .batch, samplesPerRecord: Int = 50) {
        self.directory = directory
        self.capBytes = capBytes
        self.fsync = fsync
        self.samplesPerRecord = samplesPerRecord
    }

    /// Segment files roll over at this size: a sixteenth of the cap, between 64 KiB and 8 MiB.
    var segmentBytes: Int { min(8 << 20, max(64 << 10, capBytes / 16)) }
}

/// Records read from the spool but not yet acknowledged.
public struct SpoolBatch: Sendable {
    public let samples: [Sample]
    /// Where the batch ends: acknowledging it removes everything before this position.
    let end: SpoolPosition
    /// Records and samples taken from each segment.
    let taken: [UInt64: (records: Int, samples: Int)]
    /// The number of records in the batch.
    public var records: Int { taken.values.reduce(0) { $0 + $1.records } }
}

struct SpoolPosition: Sendable, Equatable, Comparable {
    var segment: UInt64
    var offset: Int
    static func < (a: SpoolPosition, b: SpoolPosition) -> Bool { (a.segment, a.offset) < (b.segment, b.offset) }
}

/// What the spool holds and has lost.
public struct SpoolCounters: Sendable, Equatable {
    public var pendingRecords = 0
    public var pendingBytes = 0
    /// Records dropped because the spool was full.
    public var droppedRecords = 0
    public var droppedSamples = 0
    /// Records skipped because their bytes were damaged (a crash mid-write, a flipped bit).
    public var corruptRecords = 0
}

/// The durable spool between polling and publishing: samples are appended to segment files before any publisher
/// takes them and removed only once every publisher has delivered them (for AMQP: the broker confirmed them). It
/// survives a crash or `kill -9`: on start, what was left is delivered first, in order. Each record carries a
/// checksum; a damaged or truncated record is skipped and counted, the records around it are kept.
///
/// Segment file `NNNNNNNNNNNNNNNNNNNN.seg`: records `"VMS1"`, payload length (UInt32 LE), CRC-32 of the payload
/// (UInt32 LE), payload (a JSON list of sample dicts). `head` holds the acknowledged position in the oldest segment.
/// All file work runs on a serial queue of its own, which is why the class may be `@unchecked Sendable`.
public final class Spool: @unchecked Sendable {
    private struct Segment {
        let id: UInt64
        var bytes: Int
        /// Records and samples not yet acknowledged.
        var records: Int
        var samples: Int
    }

    public let configuration: SpoolConfiguration
    private let queue = DispatchQueue(label: "virtmeter.spool")
    private let logger: Logger
    private var segments: [Segment] = []
    private var writer: FileHandle?
    /// Everything before this position has been acknowledged.
    private var head: SpoolPosition
    /// Everything before this position has been handed out by `next` (and not yet acknowledged).
    private var readPosition: SpoolPosition
    private var counters = SpoolCounters()
    /// The segment being read, as last read from disk.
    private var readCache: (id: UInt64, bytes: [UInt8])?
    private var waiting: [CheckedContinuation<Void, Never>] = []
    /// Set by `finish()`: nothing more will be appended; `next` returns nil once all is read.
    private var finished = false

    static let magic: [UInt8] = Array("VMS1".utf8)
    static let headerBytes = 12

    /// Opens (or creates) the spool in `configuration.directory` and recovers what a previous run left there.
    /// Throws when the directory cannot be created or read.
    public init(configuration: SpoolConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        try FileManager.default.createDirectory(atPath: configuration.directory, withIntermediateDirectories: true)
        let names = try FileManager.default.contentsOfDirectory(atPath: configuration.directory)
        let ids = names.compactMap { $0.hasSuffix(".seg") ? UInt64($0.dropLast(4)) : nil }.sorted()
        head = SpoolPosition(segment: ids.first ?? 1, offset: 0)
        if let text = try? String(contentsOfFile: configuration.directory + "/head", encoding: .utf8) {
            let parts = text.split(separator: " ")
                .compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if parts.count == 2, let first = ids.first, UInt64(parts[0]) == first {
                head = SpoolPosition(segment: first, offset: parts[1])
            }
        }
        var recovered: [Segment] = []
        for id in ids {
            let file = Self.path(configuration.directory, id)
            let bytes = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
            let scanned = Self.scan(file, from: id == head.segment ? head.offset : 0)
            recovered.append(Segment(id: id, bytes: bytes, records: scanned.records, samples: scanned.samples))
        }
        segments = recovered
        readPosition = head
        // New records always go to a new segment: never append after a record a crash may have cut short.
        try openSegment((ids.last ?? 0) + 1)
        recount()
        if counters.pendingRecords > 0 {
            logger.info("spool recovered: delivering what a previous run left first", metadata: [
                "records": "\(counters.pendingRecords)", "directory": "\(configuration.directory)",
            ])
        }
    }

    deinit { try? writer?.close() }

    /// The counters now.
    public var currentCounters: SpoolCounters { queue.sync { counters } }

    /// Appends one cycle's samples, in records of at most `samplesPerRecord`, synced to disk per the fsync policy,
    /// and wakes whoever waits in `next`. Throws when the disk refuses the write.
    public func append(_ samples: [Sample]) async throws {
        guard !samples.isEmpty else { return }
        try await onQueue { try self.appendOnQueue(samples) }
    }

    /// Up to `maxRecords` records after those already handed out, oldest first; waits until there is one.
    /// Returns nil when the task is cancelled, or once `finish()` was called and everything has been read.
    public func next(maxRecords: Int) async -> SpoolBatch? {
        while !Task.isCancelled {
            if let batch = await onQueue({ self.readOnQueue(maxRecords: maxRecords) }) { return batch }
            if await onQueue({ self.finished && !(self.readPosition < self.end) }) { return nil }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    queue.async {
                        if self.readPosition < self.end || self.finished {
                            continuation.resume()
                        } else {
                            self.waiting.append(continuation)
                        }
                    }
                }
            } onCancel: {
                self.queue.async { self.wakeWaiters() }
            }
        }
        return nil
    }

    /// Nothing more will be appended: `next` returns nil once it has handed out everything.
    public func finish() {
        queue.async {
            self.finished = true
            self.wakeWaiters()
        }
    }

    /// Whether records wait that `next` has not handed out.
    public var hasUnread: Bool { queue.sync { readPosition < end } }

    /// Acknowledges `batch` (and everything before it): its records are gone for good.
    public func acknowledge(_ batch: SpoolBatch) async {
        await onQueue { self.acknowledgeOnQueue(batch.end, taken: batch.taken) }
    }

    // MARK: - On the queue

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in queue.async { continuation.resume(returning: body()) } }
    }

    private func path(_ id: UInt64) -> String { Self.path(configuration.directory, id) }

    static func path(_ directory: String, _ id: UInt64) -> String {
        let digits = String(id)
        return directory + "/" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    /// The position after the last record written.
    private var end: SpoolPosition {
        SpoolPosition(segment: segments.last?.id ?? head.segment, offset: segments.last?.bytes ?? 0)
    }

    private func openSegment(_ id: UInt64) throws {
        try? writer?.close()
        guard FileManager.default.createFile(atPath: path(id), contents: nil) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path(id)])
        }
        writer = try FileHandle(forWritingTo: URL(fileURLWithPath: path(id)))
        segments.append(Segment(id: id, bytes: 0, records: 0, samples: 0))
    }

    private func appendOnQueue(_ samples: [Sample]) throws {
        var data = Data()
        var records = 0
        for start in stride(from: 0, to: samples.count, by: configuration.samplesPerRecord) {
            let chunk = samples[start..<min(start + configuration.samplesPerRecord, samples.count)]
            var text = "["
            for (index, sample) in chunk.enumerated() {
                if index > 0 { text += ", " }
                sample.json.write(to: &text)
            }
            text += "]"
            let payload = Array(text.utf8)
            data.append(contentsOf: Self.magic)
            data.append(contentsOf: Self.littleEndian(UInt32(payload.count)))
            data.append(contentsOf: Self.littleEndian(CRC32.checksum(payload)))
            data.append(contentsOf: payload)
            records += 1
        }
        if let last = segments.last, last.bytes > 0, last.bytes + data.count > configuration.segmentBytes {
            try openSegment(last.id + 1)
        }
        guard let writer else { return }
        try writer.write(contentsOf: data)
        if configuration.fsync == .batch { try writer.synchronize() }
        segments[segments.count - 1].bytes += data.count
        segments[segments.count - 1].records += records
        segments[segments.count - 1].samples += samples.count
        enforceCap()
        recount()
        wakeWaiters()
    }

    private func wakeWaiters() {
        let continuations = waiting
        waiting = []
        for continuation in continuations { continuation.resume() }
    }

    /// Drops the oldest segments while the spool is over its cap, never the one being written.
    private func enforceCap() {
        while segments.count > 1, segments.reduce(0, { $0 + $1.bytes }) > configuration.capBytes {
            let oldest = segments.removeFirst()
            try? FileManager.default.removeItem(atPath: path(oldest.id))
            counters.droppedRecords += oldest.records
            counters.droppedSamples += oldest.samples
            logger.warning("spool full: dropped its oldest records", metadata: [
                "records": "\(oldest.records)", "samples": "\(oldest.samples)",
                "dropped_records_total": "\(counters.droppedRecords)", "cap_bytes": "\(configuration.capBytes)",
            ])
            let next = SpoolPosition(segment: segments[0].id, offset: 0)
            if head < next { head = next }
            if readPosition < next { readPosition = next }
            saveHead()
        }
    }

    private func readOnQueue(maxRecords: Int) -> SpoolBatch? {
        var samples: [Sample] = []
        var records = 0
        var taken: [UInt64: (records: Int, samples: Int)] = [:]
        var position = readPosition
        while records < maxRecords, position < end {
            guard let index = segments.firstIndex(where: { $0.id >= position.segment }) else { break }
            let segment = segments[index]
            if segment.id != position.segment { position = SpoolPosition(segment: segment.id, offset: 0) }
            if position.offset >= segment.bytes {
                guard index + 1 < segments.count else { break }
                position = SpoolPosition(segment: segments[index + 1].id, offset: 0)
                continue
            }
            guard let bytes = segmentContents(segment.id, covering: segment.bytes) else {
                position = SpoolPosition(segment: segment.id, offset: segment.bytes)
                continue
            }
            while records < maxRecords, position.offset < min(bytes.count, segment.bytes) {
                switch Self.record(in: bytes, at: position.offset) {
                case .record(let payload, let next):
                    position.offset = next
                    records += 1
                    let decoded = Self.decode(payload)
                    samples += decoded
                    taken[segment.id, default: (0, 0)].records += 1
                    taken[segment.id, default: (0, 0)].samples += decoded.count
                case .corrupt(let next):
                    counters.corruptRecords += 1
                    logger.warning("spool record damaged: skipped", metadata: [
                        "segment": "\(path(segment.id))", "offset": "\(position.offset)",
                    ])
                    position.offset = next
                }
            }
            if position.offset >= bytes.count { position.offset = segment.bytes }
        }
        guard records > 0 || position != readPosition else { return nil }
        let nothingInFlight = head == readPosition
        readPosition = position
        if records == 0 {
            // Only damaged bytes were passed over: acknowledge them, unless records before them are in flight.
            if nothingInFlight { acknowledgeOnQueue(position, taken: [:]) }
            return nil
        }
        return SpoolBatch(samples: samples, end: position, taken: taken)
    }

    /// The bytes of segment `id`, read again only when the copy in memory is shorter than the `length` bytes written
    /// to it so far (whole records only): a backlog is read a few records at a time, and a segment holds many.
    private func segmentContents(_ id: UInt64, covering length: Int) -> [UInt8]? {
        if let cached = readCache, cached.id == id, cached.bytes.count >= length { return cached.bytes }
        guard let data = FileManager.default.contents(atPath: path(id)) else { return nil }
        readCache = (id, [UInt8](data))
        return readCache?.bytes
    }

    private func acknowledgeOnQueue(_ position: SpoolPosition, taken: [UInt64: (records: Int, samples: Int)]) {
        guard head < position else { return }
        head = position
        for index in segments.indices {
            guard let counts = taken[segments[index].id] else { continue }
            segments[index].records = max(0, segments[index].records - counts.records)
            segments[index].samples = max(0, segments[index].samples - counts.samples)
        }
        while segments.count > 1, let first = segments.first,
              first.id < head.segment || (first.id == head.segment && head.offset >= first.bytes) {
            try? FileManager.default.removeItem(atPath: path(first.id))
            segments.removeFirst()
            if head.segment <= first.id { head = SpoolPosition(segment: segments[0].id, offset: 0) }
        }
        saveHead()
        recount()
    }

    /// Persists the acknowledged position (atomically: written aside, then renamed).
    private func saveHead() {
        let text = "\(head.segment) \(head.offset)\n"
        let temporary = configuration.directory + "/head.tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) else { return }
        _ = rename(temporary, configuration.directory + "/head")
    }

    private func recount() {
        counters.pendingRecords = segments.reduce(0) { $0 + $1.records }
        counters.pendingBytes = max(0, segments.reduce(0) { $0 + $1.bytes } - head.offset)
    }

    /// Records and samples in the segment file from `offset` on (damaged bytes are counted when they are read).
    static func scan(_ file: String, from offset: Int) -> (records: Int, samples: Int) {
        guard let data = FileManager.default.contents(atPath: file) else { return (0, 0) }
        let bytes = [UInt8](data)
        var position = offset, records = 0, samples = 0
        while position < bytes.count {
            switch record(in: bytes, at: position) {
            case .record(let payload, let next):
                records += 1
                samples += decode(payload).count
                position = next
            case .corrupt(let next):
                position = next
            }
        }
        return (records, samples)
    }

    enum Parsed {
        case record(payload: ArraySlice<UInt8>, next: Int)
        /// Damaged bytes; reading resumes at `next`, the next record's magic (or the end).
        case corrupt(next: Int)
    }

    /// The record at `offset`, or where to resume after damaged bytes.
    static func record(in bytes: [UInt8], at offset: Int) -> Parsed {
        func resync() -> Parsed {
            var position = offset + 1
            while position + 4 <= bytes.count {
                if bytes[position..<position + 4].elementsEqual(magic) { return .corrupt(next: position) }
                position += 1
            }
            return .corrupt(next: bytes.count)
        }
        guard offset + headerBytes <= bytes.count, bytes[offset..<offset + 4].elementsEqual(magic) else {
            return resync()
        }
        let length = Int(readUInt32(bytes, offset + 4)), checksum = readUInt32(bytes, offset + 8)
        let start = offset + headerBytes
        guard length <= bytes.count - start else { return resync() }
        let payload = bytes[start..<start + length]
        guard CRC32.checksum(payload) == checksum else { return resync() }
        return .record(payload: payload, next: start + length)
    }

    static func decode(_ payload: ArraySlice<UInt8>) -> [Sample] {
        guard case .array(let items)? = try? JSONValue.parse(bytes: Array(payload)) else { return [] }
        return items.compactMap(Sample.init(json:))
    }

    static func littleEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value & 0xFF), UInt8((value >> 8) & 0xFF), UInt8((value >> 16) & 0xFF), UInt8(value >> 24)]
    }

    static func readUInt32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

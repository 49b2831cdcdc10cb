import CChecksum
import Dispatch
import Foundation
import Logging
import Synchronization
import VirtMeterCore

/// When the spool forces its writes to disk.
package enum FsyncPolicy: String, Sendable, CaseIterable {
    /// After every poll cycle's samples (the default): a crash or power loss loses nothing accepted.
    case batch
    /// Never explicitly: the kernel writes back within seconds; a crash of virtmeter alone still loses nothing.
    case never
}

/// Settings of the spool.
package struct SpoolConfiguration: Sendable, Equatable {
    package var directory: String
    /// Largest total size of the segment files; beyond it the oldest segments are dropped (counted, logged).
    package var capBytes: Int
    package var fsync: FsyncPolicy

    package init(directory: String, capBytes: Int = 256 << 20, fsync: FsyncPolicy = .batch) {
        self.directory = directory
        self.capBytes = capBytes
        self.fsync = fsync
    }

    /// Segment files roll over at this size: a sixteenth of the cap, between 64 KiB and 8 MiB.
    var segmentBytes: Int { min(8 << 20, max(64 << 10, capBytes / 16)) }
}

/// Records read from the spool but not yet acknowledged.
package struct SpoolBatch: Sendable {
    package let records: SampleRecords
    /// What acknowledging the batch takes, without holding its bytes.
    package let receipt: SpoolReceipt
}

/// Where a batch ends (acknowledging it removes everything before this position), and the records and samples it took
/// from each segment.
package struct SpoolReceipt: Sendable {
    let end: SpoolPosition
    let taken: [UInt64: Tally]
}

struct SpoolPosition: Sendable, Equatable, Comparable {
    var segment: UInt64
    var offset: Int
    static func < (a: SpoolPosition, b: SpoolPosition) -> Bool { (a.segment, a.offset) < (b.segment, b.offset) }
}

/// Records and samples.
struct Tally: Sendable, Equatable {
    var records = 0
    var samples = 0
}

/// What the spool holds and has lost.
package struct SpoolCounters: Sendable, Equatable {
    package var pendingRecords = 0
    package var pendingSamples = 0
    package var pendingBytes = 0
    /// Records dropped because the spool was over its cap.
    package var droppedRecords = 0
    package var droppedSamples = 0
    /// Samples that could not be written (the disk full, a write error).
    package var lostSamples = 0
    /// Records skipped because their bytes were damaged (a crash mid-write, a flipped bit).
    package var corruptRecords = 0
}

/// Why the spool cannot be used.
package enum SpoolError: Error, CustomStringConvertible {
    /// Another process holds the state directory's lock.
    case locked(directory: String, holder: String)
    case file(FileError)

    package var description: String {
        switch self {
        case .locked(let directory, let holder):
            return "\(directory) is in use by another virtmeter (pid \(holder)); one agent per state directory"
        case .file(let error): return error.description
        }
    }
}

/// The durable spool between polling and publishing: a cycle's records (`SampleRecords`, the samples' final bytes)
/// are written to segment files before any publisher takes them, and removed only once every publisher has delivered
/// them (for AMQP: the broker confirmed them). It survives a crash or `kill -9`: on start, what was left is
/// delivered first, in order. Each record carries a CRC-32C; a damaged or truncated record is skipped and counted,
/// the records around it are kept. A full disk costs the samples of the cycles that could not be written (counted,
/// logged once per outage), never what was already spooled; delivered records give their space back as soon as
/// everything written is delivered, not only when a segment rolls over (but for the spare, while the disk has room).
///
/// The last delivered segment is not removed but kept as `spare` and written over by the next segment (while the file
/// system has a tenth of its space free): creating, filling and removing a file per cycle cost the kernel about as
/// much again as writing the records. Its old records are told from new ones by their CRC: on disk each record's
/// CRC-32C is XORed with the low 32 bits of its segment's id (0 in files of earlier versions, still read), so a record
/// left from an earlier use of the file checks with an older id, and a recovery scan ends the segment there.
///
/// Files, all private to the owner: `NNNNNNNNNNNNNNNNNNNN.seg` (records back to back, see `SampleRecords`), `spare`
/// (a delivered segment, to be written over), `head` (the acknowledged position, written in place: `"VMH1"`, segment
/// and offset as UInt64 LE, CRC-32C of the 16 bytes before it, so a full disk can never keep it from being updated),
/// `lock` (flock'ed by the one agent using the directory, holding its PID).
///
/// All file work runs on a serial queue of its own, which is why the class may be `@unchecked Sendable`; readers
/// are woken through an `AsyncStream` doorbell (one reader at a time).
package final class Spool: @unchecked Sendable {
    private struct Segment {
        let id: UInt64
        /// Bytes of whole records written (and, up to `committed`, visible).
        var bytes: Int
        /// Records and samples not yet acknowledged.
        var pending: Tally
        /// Made by this run, every record in it tagged with its id: it may become the spare once delivered.
        var recyclable = false
    }

    package let configuration: SpoolConfiguration
    private let queue = DispatchQueue(label: "virtmeter.spool")
    private let logger: Logger
    private var segments: [Segment] = []
    /// The open segment's file descriptor, or -1.
    private var writer: Int32 = -1
    /// Set when the open segment may hold bytes past its last record (a write failed and could not be undone).
    private var writerBroken = false
    private let lockDescriptor: Int32
    private let headDescriptor: Int32
    /// Everything before this position has been acknowledged.
    private var head: SpoolPosition
    /// Whether `head` still has to be written to the head file (an earlier write failed).
    private var headUnsaved = false
    /// Everything before this position has been handed out by `next` (and not yet acknowledged).
    private var readPosition: SpoolPosition
    /// The mean size of the records last handed out: a read asks for about as many bytes as `maxRecords` of them
    /// take, so that the bytes past them are not read twice. 0 until a batch was read.
    private var recordBytesSeen = 0
    /// What `next` may hand out: everything before this position (written and committed).
    private var committed: SpoolPosition
    /// Written since the last commit.
    private var uncommitted = Tally()
    /// When writing started failing, in the current outage.
    private var writeOutageSince: Double?
    private var lostInOutage = 0
    private let counters = Mutex(SpoolCounters())
    private let doorbell: AsyncStream<Void>
    private let ring: AsyncStream<Void>.Continuation
    /// Set by `finish()`: nothing more will be written; `next` returns nil once all is read.
    private let finished = Atomic(false)

    static let headMagic: [UInt8] = Array("VMH1".utf8)
    /// Bytes read from a segment at a time, at most, when handing records out.
    static let readWindow = 2 << 20

    /// Opens (or creates) the spool in `configuration.directory`, takes its lock, and recovers what a previous run
    /// left there. Throws `SpoolError.locked` when another agent uses the directory, `.file` when it cannot be
    /// created, read or locked.
    package init(configuration: SpoolConfiguration, logger: Logger) throws(SpoolError) {
        self.configuration = configuration
        self.logger = logger
        let directory = configuration.directory
        (doorbell, ring) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            // A missing parent: create the chain (private too).
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw .file(FileError("mkdir", path: directory))
            }
        }
        lockDescriptor = try Self.lock(directory)
        // A spare from an earlier run: its records' ids are not this run's to compare with.
        unlink(directory + "/spare")
        headDescriptor = open(directory + "/head", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard headDescriptor >= 0 else {
            close(lockDescriptor)
            throw .file(FileError("open", path: directory + "/head"))
        }
        let ids: [UInt64]
        do {
            ids = try FileManager.default.contentsOfDirectory(atPath: directory)
                .compactMap { $0.hasSuffix(".seg") ? UInt64($0.dropLast(4)) : nil }.sorted()
        } catch {
            close(lockDescriptor)
            close(headDescriptor)
            throw .file(FileError("list", path: directory))
        }
        head = SpoolPosition(segment: ids.first ?? 1, offset: 0)
        if let saved = Self.readHead(headDescriptor), let first = ids.first, saved.segment == first {
            head = saved
        }
        for id in ids {
            let scanned = Self.scan(Self.path(directory, id), id: id, from: id == head.segment ? head.offset : 0)
            segments.append(Segment(id: id, bytes: scanned.end, pending: scanned.tally))
        }
        readPosition = head
        committed = SpoolPosition(segment: segments.last?.id ?? head.segment, offset: segments.last?.bytes ?? 0)
        recount()
        // New records always go to a new segment (opened at the first write): never after bytes a crash cut short.
        writerBroken = true
        // The head file gets its block now, so that a full disk can never keep it from being updated.
        saveHead()
        if counters.withLock({ $0.pendingRecords }) > 0 {
            logger.info("spool recovered: delivering what a previous run left first", metadata: [
                "virtmeter.spool.records": "\(counters.withLock { $0.pendingRecords })",
                "virtmeter.spool.directory": "\(directory)",
            ])
        }
    }

    deinit {
        if writer >= 0 { close(writer) }
        close(headDescriptor)
        close(lockDescriptor)
    }

    /// The counters now (never waits for the spool's file work).
    package var currentCounters: SpoolCounters { counters.withLock { $0 } }

    /// Writes `records` after those already written; `next` hands them out once `commit()` made them durable. When
    /// they cannot be written (the disk is full), nothing of them remains, their samples are counted as lost, and the
    /// outage is logged once when it starts and once when it ends.
    package func write(_ records: SampleRecords) async {
        guard !records.spans.isEmpty else { return }
        await queue.run { self.writeOnQueue(records) }
    }

    /// Makes the records written since the last commit durable (fsync, per the policy) and visible to `next`. If
    /// they cannot be synced, they are taken back and counted as lost.
    package func commit() async {
        await queue.run { self.commitOnQueue() }
    }

    /// Up to `maxRecords` records after those already handed out, oldest first; waits until there is one.
    /// Returns nil when the task is cancelled, or once `finish()` was called and everything has been read.
    /// `delivered`, if given, is acknowledged first, in the same trip to the spool's queue. One reader at a time.
    package func next(maxRecords: Int, acknowledging delivered: SpoolReceipt? = nil) async -> SpoolBatch? {
        var bells = doorbell.makeAsyncIterator()
        var delivered = delivered
        while !Task.isCancelled {
            let finishing = finished.load(ordering: .acquiring)
            let acknowledged = delivered
            delivered = nil
            switch await queue.run({ () -> ReadResult in
                if let acknowledged { self.acknowledgeOnQueue(acknowledged) }
                return self.readOnQueue(maxRecords: maxRecords)
            }) {
            case .batch(let batch): return batch
            case .skipped: continue
            case .empty: if finishing { return nil }
            }
            guard await bells.next() != nil else { return nil }
        }
        if let delivered { await queue.run { self.acknowledgeOnQueue(delivered) } }
        return nil
    }

    /// Nothing more will be written: `next` returns nil once it has handed out everything.
    package func finish() {
        finished.store(true, ordering: .releasing)
        ring.yield()
    }

    /// Acknowledges `batch` (and everything before it): its records are gone for good.
    package func acknowledge(_ batch: SpoolBatch) async {
        let receipt = batch.receipt
        await queue.run { self.acknowledgeOnQueue(receipt) }
    }

    // MARK: - On the queue

    private func path(_ id: UInt64) -> String { Self.path(configuration.directory, id) }

    static func path(_ directory: String, _ id: UInt64) -> String {
        let digits = String(id)
        return directory + "/" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    private var totalBytes: Int { segments.reduce(0) { $0 + $1.bytes } }

    private func writeOnQueue(_ records: SampleRecords) {
        let tally = Tally(records: records.spans.count, samples: records.sampleCount)
        let recordBytes = records.spans.reduce(0) { $0 + $1.record.count }
        do throws(FileError) {
            // A segment rolls over between cycles only, so a cycle's uncommitted records are all in the last one.
            if writer < 0 || writerBroken || (uncommitted.records == 0 && segments.last.map({ $0.bytes > 0
                && $0.bytes + recordBytes > configuration.segmentBytes }) == true) {
                try openSegment()
            }
        } catch {
            lose(tally.samples, error)
            return
        }
        let last = segments.count - 1
        let start = segments[last].bytes
        // Each record's header with its CRC (taken when it was sealed) tagged with the segment, apart: the records'
        // bytes are written as they are, not copied.
        let tag = Self.tag(segments[last].id)
        var headers = [UInt8](repeating: 0, count: records.spans.count * SampleRecords.headerBytes)
        records.bytes.withUnsafeBytes { raw in
            headers.withUnsafeMutableBytes { out in
                for (index, span) in records.spans.enumerated() {
                    let header = out.baseAddress! + index * SampleRecords.headerBytes
                    header.copyMemory(from: raw.baseAddress! + span.start, byteCount: SampleRecords.headerBytes)
                    let crc = header.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian
                    header.storeBytes(of: (crc ^ tag).littleEndian, toByteOffset: 12, as: UInt32.self)
                }
            }
        }
        let failure: FileError? = records.bytes.withUnsafeBytes { raw in
            headers.withUnsafeBytes { headerBytes in
                var pieces: [iovec] = []
                pieces.reserveCapacity(2 * records.spans.count)
                for (index, span) in records.spans.enumerated() {
                    pieces.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: headerBytes.baseAddress!
                                                                           + index * SampleRecords.headerBytes),
                                        iov_len: SampleRecords.headerBytes))
                    pieces.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress!
                                                                           + span.payload.lowerBound),
                                        iov_len: span.payloadLength))
                }
                var offset = start
                let written = writeAll(&pieces) { pieces, count in
                    let written = pwritev(writer, pieces, count, off_t(offset))
                    if written > 0 { offset += written }
                    return written
                }
                guard written else {
                    return FileError("write", path: path(segments[last].id))
                }
                return nil
            }
        }
        if let failure {
            // Take the partial write back, so the segment ends with a whole record.
            if ftruncate(writer, off_t(start)) != 0 { writerBroken = true }
            lose(tally.samples, failure)
            return
        }
        segments[last].bytes = start + recordBytes
        segments[last].pending.records += tally.records
        segments[last].pending.samples += tally.samples
        uncommitted.records += tally.records
        uncommitted.samples += tally.samples
        enforceCap()
        recount()
    }

    private func lose(_ samples: Int, _ error: FileError) {
        counters.withLock { $0.lostSamples += samples }
        lostInOutage += samples
        guard writeOutageSince == nil else { return }
        writeOutageSince = SampleClock.monotonic()
        logger.error("spool cannot write: samples are lost until it can", metadata: [
            "virtmeter.spool.error": "\(error)", "virtmeter.spool.directory": "\(configuration.directory)",
        ])
    }

    private func openSegment() throws(FileError) {
        if writer >= 0 { close(writer) }
        writer = -1
        let id = (segments.last?.id ?? head.segment - 1) + 1
        // The spare, if there is one, is written over: its records are told from the new ones by their tags.
        let reused = rename(sparePath, path(id)) == 0
        let descriptor = open(path(id), O_WRONLY | O_CREAT | (reused ? 0 : O_TRUNC) | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw FileError("open", path: path(id)) }
        writer = descriptor
        writerBroken = false
        if let last = segments.last, last.bytes == 0, last.pending.records == 0 {
            // An empty segment left behind (a failed first write): replace it.
            unlink(path(last.id))
            segments.removeLast()
        }
        segments.append(Segment(id: id, bytes: 0, pending: Tally(), recyclable: true))
    }

    private var sparePath: String { configuration.directory + "/spare" }

    /// Removes a delivered segment's file, or keeps it as the spare that the next segment writes over: when this run
    /// made it and the file system has a tenth of its space free (else a full disk gets the space back).
    private func retire(_ segment: Segment) {
        var fs = statvfs()
        if segment.recyclable, statvfs(configuration.directory, &fs) == 0, fs.f_bavail >= fs.f_blocks / 10,
           rename(path(segment.id), sparePath) == 0 {
            return
        }
        unlink(path(segment.id))
    }

    /// The tag XORed into the CRC of every record of segment `id` on disk: the id's low 32 bits.
    static func tag(_ id: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: id) }

    private func commitOnQueue() {
        guard uncommitted.records > 0 else { return }
        if configuration.fsync == .batch, writer >= 0, fsync(writer) != 0 {
            let error = FileError("fsync", path: path(segments[segments.count - 1].id))
            // What was written since the last commit may not be on disk: take it back.
            let last = segments.count - 1
            segments[last].bytes = committed.segment == segments[last].id ? committed.offset : 0
            segments[last].pending.records -= uncommitted.records
            segments[last].pending.samples -= uncommitted.samples
            if ftruncate(writer, off_t(segments[last].bytes)) != 0 { writerBroken = true }
            lose(uncommitted.samples, error)
            uncommitted = Tally()
            recount()
            return
        }
        uncommitted = Tally()
        if let since = writeOutageSince {
            logger.notice("spool writing again", metadata: [
                "virtmeter.spool.outage_seconds": "\(Int((SampleClock.monotonic() - since).rounded()))",
                "virtmeter.spool.lost_samples": "\(lostInOutage)",
            ])
            writeOutageSince = nil
            lostInOutage = 0
        }
        if let last = segments.last { committed = SpoolPosition(segment: last.id, offset: last.bytes) }
        if headUnsaved { saveHead() }
        ring.yield()
    }

    private enum ReadResult {
        case batch(SpoolBatch)
        /// Only damaged bytes were passed over: read again.
        case skipped
        /// Nothing committed is left to hand out.
        case empty
    }

    /// Reads up to `maxRecords` records from the segment at the read position (a window of at most `readWindow`
    /// bytes, or one record if it is larger), checking each record's CRC.
    private func readOnQueue(maxRecords: Int) -> ReadResult {
        var position = readPosition
        while position < committed {
            guard let index = segments.firstIndex(where: { $0.id >= position.segment }) else { break }
            let segment = segments[index]
            if segment.id != position.segment { position = SpoolPosition(segment: segment.id, offset: 0) }
            let limit = segment.id == committed.segment ? committed.offset : segment.bytes
            guard position.offset < limit else {
                guard index + 1 < segments.count else { break }
                position = SpoolPosition(segment: segments[index + 1].id, offset: 0)
                continue
            }
            return read(segment.id, from: position, limit: limit, maxRecords: maxRecords)
        }
        if position != readPosition { readPosition = position }
        return .empty
    }

    private func read(_ id: UInt64, from position: SpoolPosition, limit: Int, maxRecords: Int) -> ReadResult {
        let wanted = recordBytesSeen > 0 ? maxRecords * (recordBytesSeen + recordBytesSeen / 8) : Self.readWindow
        var length = min(limit - position.offset, Self.readWindow, wanted)
        var bytes = Self.readBytes(path(id), offset: position.offset, length: length)
        // A record larger than the window: read it whole.
        if let header = bytes.withUnsafeBytes({ SampleRecords.header(in: $0, at: 0) }),
           SampleRecords.headerBytes + header.payloadLength > length,
           SampleRecords.headerBytes + header.payloadLength <= limit - position.offset {
            length = SampleRecords.headerBytes + header.payloadLength
            bytes = Self.readBytes(path(id), offset: position.offset, length: length)
        }
        var spans: [SampleRecords.Span] = []
        var tally = Tally(), offset = 0, corrupt = 0
        let windowEndsEarly = position.offset + bytes.count < limit
        records: while spans.count < maxRecords, offset < bytes.count {
            switch bytes.withUnsafeBytes({ Self.record(in: $0, at: offset, tag: Self.tag(id)) }) {
            case .record(let span, let checksum):
                // In memory a record's header holds its CRC untagged, as `RecordWriter` sealed it.
                bytes.withUnsafeMutableBytes {
                    $0.storeBytes(of: checksum.littleEndian, toByteOffset: span.start + 12, as: UInt32.self)
                }
                spans.append(span)
                tally.records += 1
                tally.samples += span.samples
                offset = span.record.upperBound
            case .incomplete:
                // Past the window's end: read next time. At the segment's end: cut short by a crash mid-write.
                if windowEndsEarly { break records }
                corrupt += 1
                offset = bytes.count
            case .corrupt(let next):
                corrupt += 1
                // A record's magic may straddle the window's end: look at the last bytes again next time.
                offset = next == bytes.count && windowEndsEarly ? max(offset + 1, next - 3) : next
            case .stale:
                // Never before the end of what this run wrote (which `limit` keeps to): damaged bytes that happen to
                // check with an older tag.
                corrupt += 1
                offset = bytes.count
            }
        }
        if corrupt > 0 {
            counters.withLock { $0.corruptRecords += corrupt }
            logger.warning("spool records damaged: skipped", metadata: [
                "virtmeter.spool.segment": "\(path(id))", "virtmeter.spool.offset": "\(position.offset)",
                "virtmeter.spool.records": "\(corrupt)",
            ])
        }
        let end = SpoolPosition(segment: id, offset: position.offset + offset)
        if !spans.isEmpty { recordBytesSeen = offset / spans.count }
        let nothingInFlight = head == readPosition
        readPosition = end
        guard !spans.isEmpty else {
            // Only damaged bytes: acknowledge them, unless records before them are in flight.
            if nothingInFlight { acknowledgeOnQueue(SpoolReceipt(end: end, taken: [:])) }
            return .skipped
        }
        return .batch(SpoolBatch(records: SampleRecords(bytes: bytes, spans: spans),
                                 receipt: SpoolReceipt(end: end, taken: [id: tally])))
    }

    private func acknowledgeOnQueue(_ receipt: SpoolReceipt) {
        let position = receipt.end, taken = receipt.taken
        guard head < position else { return }
        head = position
        for index in segments.indices {
            guard let counts = taken[segments[index].id] else { continue }
            segments[index].pending.records = max(0, segments[index].pending.records - counts.records)
            segments[index].pending.samples = max(0, segments[index].pending.samples - counts.samples)
        }
        while let first = segments.first, first.id < head.segment
                || (segments.count > 1 && first.id == head.segment && head.offset >= first.bytes) {
            unlink(path(first.id))
            segments.removeFirst()
            if head.segment <= first.id { head = SpoolPosition(segment: segments[0].id, offset: 0) }
        }
        // Everything written is delivered: give the last segment's space back now (a full disk clears itself).
        if let last = segments.last, last.id == head.segment, head.offset >= last.bytes, uncommitted.records == 0 {
            if writer >= 0 { close(writer) }
            writer = -1
            retire(last)
            segments.removeAll()
            head = SpoolPosition(segment: last.id + 1, offset: 0)
            readPosition = head
            committed = head
        }
        saveHead()
        recount()
    }

    /// Drops the oldest segments while the spool is over its cap, never the one being written.
    private func enforceCap() {
        while segments.count > 1, totalBytes > configuration.capBytes {
            let oldest = segments.removeFirst()
            unlink(path(oldest.id))
            let dropped = counters.withLock { counters -> Int in
                counters.droppedRecords += oldest.pending.records
                counters.droppedSamples += oldest.pending.samples
                return counters.droppedRecords
            }
            logger.warning("spool full: dropped its oldest records", metadata: [
                "virtmeter.spool.records": "\(oldest.pending.records)",
                "virtmeter.spool.samples": "\(oldest.pending.samples)",
                "virtmeter.spool.dropped_records_total": "\(dropped)",
                "virtmeter.spool.cap_bytes": "\(configuration.capBytes)",
            ])
            let next = SpoolPosition(segment: segments[0].id, offset: 0)
            if head < next { head = next }
            if readPosition < next { readPosition = next }
            if committed < next { committed = next }
            saveHead()
        }
    }

    /// Persists the acknowledged position, in place (no new block is ever needed, so a full disk cannot stop it).
    /// A failure is logged once and retried at the next acknowledgement or commit.
    private func saveHead() {
        var record = Self.headMagic
        withUnsafeBytes(of: head.segment.littleEndian) { record += $0 }
        withUnsafeBytes(of: UInt64(head.offset).littleEndian) { record += $0 }
        let crc = record.withUnsafeBytes { virtmeter_crc32c(0, $0.baseAddress! + 4, 16) }
        withUnsafeBytes(of: crc.littleEndian) { record += $0 }
        let written = record.withUnsafeBytes { pwrite(headDescriptor, $0.baseAddress, $0.count, 0) }
        if written == record.count {
            if headUnsaved { logger.notice("spool position saved again") }
            headUnsaved = false
        } else if !headUnsaved {
            headUnsaved = true
            logger.error("spool position not saved: a restart may deliver some samples twice; retrying", metadata: [
                "virtmeter.spool.error": "\(FileError("write", path: configuration.directory + "/head"))",
            ])
        }
    }

    private static func readHead(_ descriptor: Int32) -> SpoolPosition? {
        var record = [UInt8](repeating: 0, count: 24)
        guard record.withUnsafeMutableBytes({ pread(descriptor, $0.baseAddress, 24, 0) }) == 24,
              record.starts(with: headMagic)
        else { return nil }
        return record.withUnsafeBytes { raw -> SpoolPosition? in
            guard virtmeter_crc32c(0, raw.baseAddress! + 4, 16)
                    == raw.loadUnaligned(fromByteOffset: 20, as: UInt32.self).littleEndian else { return nil }
            return SpoolPosition(segment: raw.loadUnaligned(fromByteOffset: 4, as: UInt64.self).littleEndian,
                                 offset: Int(raw.loadUnaligned(fromByteOffset: 12, as: UInt64.self).littleEndian))
        }
    }

    private func recount() {
        let pending = segments.reduce(Tally()) {
            Tally(records: $0.records + $1.pending.records, samples: $0.samples + $1.pending.samples)
        }
        let bytes = max(0, totalBytes - (segments.first?.id == head.segment ? head.offset : 0))
        counters.withLock {
            $0.pendingRecords = pending.records
            $0.pendingSamples = pending.samples
            $0.pendingBytes = bytes
        }
    }

    /// Takes the directory's lock for this process, or names who holds it.
    private static func lock(_ directory: String) throws(SpoolError) -> Int32 {
        let path = directory + "/lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .file(FileError("open", path: path)) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var holder = [UInt8](repeating: 0, count: 32)
            let count = holder.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 32, 0) }
            close(descriptor)
            guard code == EWOULDBLOCK else { throw .file(FileError("lock", path: path, code: code)) }
            let pid = String(decoding: holder.prefix(max(0, count)), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw .locked(directory: directory, holder: pid.isEmpty ? "unknown" : pid)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        return descriptor
    }

    /// The end of segment `id`'s records in its file and the whole records from `offset` on. A file written over
    /// (the spare) ends where a record of its earlier use begins, or before the bytes left of one: bytes after the
    /// last whole record that begin with a record's magic are a record cut short (a crash mid-write), which the
    /// read skips and counts; any others are what is left of an older record.
    static func scan(_ file: String, id: UInt64, from offset: Int) -> (end: Int, tally: Tally) {
        guard let data = FileManager.default.contents(atPath: file) else { return (0, Tally()) }
        let bytes = [UInt8](data)
        var position = offset, tally = Tally(), afterWhole = offset
        while position < bytes.count {
            switch bytes.withUnsafeBytes({ record(in: $0, at: position, tag: tag(id)) }) {
            case .record(let span, _):
                tally.records += 1
                tally.samples += span.samples
                position = span.record.upperBound
                afterWhole = position
            case .corrupt(let next): position = next
            case .incomplete: position = bytes.count
            case .stale:
                let cutShort = bytes[afterWhole...].starts(with: SampleRecords.magic)
                return (cutShort ? position : afterWhole, tally)
            }
        }
        return (bytes.count, tally)
    }

    enum Parsed {
        /// A whole record, and its CRC (untagged).
        case record(SampleRecords.Span, checksum: UInt32)
        /// Damaged bytes; reading resumes at `next`, the next record's magic (or the end).
        case corrupt(next: Int)
        /// A header whose record does not end within the bytes.
        case incomplete
        /// A whole record from an earlier use of the file: its CRC checks with an older segment's tag.
        case stale
    }

    /// The record at `offset` of a segment whose records' CRCs carry `tag` (or 0: written by an earlier version), or
    /// where to resume after damaged bytes.
    static func record(in bytes: UnsafeRawBufferPointer, at offset: Int, tag: UInt32) -> Parsed {
        let magic = SampleRecords.magic
        func resync() -> Parsed {
            var position = offset + 1
            while position + magic.count <= bytes.count {
                if bytes[position] == magic[0], bytes[position..<position + magic.count].elementsEqual(magic) {
                    return .corrupt(next: position)
                }
                position += 1
            }
            return .corrupt(next: bytes.count)
        }
        guard let header = SampleRecords.header(in: bytes, at: offset) else {
            let available = min(magic.count, bytes.count - offset)
            if offset + SampleRecords.headerBytes > bytes.count,
               bytes[offset..<offset + available].elementsEqual(magic.prefix(available)) {
                return .incomplete
            }
            return resync()
        }
        let start = offset + SampleRecords.headerBytes
        guard header.payloadLength <= bytes.count - start else { return .incomplete }
        let crc = virtmeter_crc32c(virtmeter_crc32c(0, bytes.baseAddress! + offset + 8, 4),
                                   bytes.baseAddress! + start, header.payloadLength)
        // Undamaged, the stored CRC is the computed one XORed with the tag the record was written with.
        let written = crc ^ header.checksum
        guard header.samples > 0, written == tag || written < tag else { return resync() }
        guard written == tag || written == 0 else { return .stale }
        return .record(SampleRecords.Span(start: offset, payloadLength: header.payloadLength, samples: header.samples),
                       checksum: crc)
    }

    /// `length` bytes of `file` from `offset` (fewer if the file is shorter).
    static func readBytes(_ file: String, offset: Int, length: Int) -> [UInt8] {
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return [] }
        defer { close(descriptor) }
        // Read straight into the array's storage: no zeroing first, this runs over every byte delivered.
        return [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            while initialized < length {
                let count = pread(descriptor, buffer.baseAddress! + initialized, length - initialized,
                                  off_t(offset + initialized))
                guard count > 0 else { break }
                initialized += count
            }
        }
    }
}

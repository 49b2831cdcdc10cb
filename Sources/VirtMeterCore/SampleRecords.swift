import CChecksum

/// Samples as they travel from a poll cycle to the publishers: their final JSON bytes, signed, grouped in records.
///
/// A record holds the samples of one published message (at most the batch size) and is laid out as
/// (integers little endian):
///
///     "VMS2" | payload length: UInt32 | sample count: UInt32 | CRC-32C of count and payload: UInt32 | payload
///
/// The payload is the samples' JSON dicts, exactly as published, separated by "\n" (compact JSON never contains a
/// raw newline): as it stands it is JSON lines for the stdout and file publishers, and one escaping pass makes it the
/// sample list of an oslo.messaging envelope. The CRC is taken when the record is sealed, while its bytes are still in
/// the cache of the thread that wrote them; on disk the spool XORs it with the segment's number (see `Spool`).
package struct SampleRecords: Sendable {
    /// One record's place in `bytes`.
    package struct Span: Sendable, Equatable {
        /// Where the record's header starts.
        package let start: Int
        /// The payload's length in bytes.
        package let payloadLength: Int
        /// The samples in the record.
        package let samples: Int

        package init(start: Int, payloadLength: Int, samples: Int) {
            self.start = start
            self.payloadLength = payloadLength
            self.samples = samples
        }

        /// Where the payload lies in `bytes`.
        package var payload: Range<Int> { start + SampleRecords.headerBytes ..< start + SampleRecords.headerBytes
            + payloadLength }
        /// Where the whole record lies in `bytes`.
        package var record: Range<Int> { start ..< payload.upperBound }
    }

    package static let magic: [UInt8] = Array("VMS2".utf8)
    /// The header's size: magic, length, count, checksum.
    package static let headerBytes = 16

    /// The records, back to back (spans may skip damaged bytes between them).
    package var bytes: [UInt8]
    /// The records in `bytes`, in order.
    package var spans: [Span]

    /// Records read back from `bytes` (by the spool).
    package init(bytes: [UInt8], spans: [Span]) {
        self.bytes = bytes
        self.spans = spans
    }

    /// No records.
    package init() { self.init(bytes: [], spans: []) }

    /// The samples of every record.
    package var sampleCount: Int { spans.reduce(0) { $0 + $1.samples } }

    /// The payload of record `index`: its samples' JSON dicts separated by "\n".
    package func payload(_ index: Int) -> ArraySlice<UInt8> { bytes[spans[index].payload] }

    /// Each sample's JSON dict as bytes, in order.
    package var sampleDicts: [ArraySlice<UInt8>] {
        spans.flatMap { span in bytes[span.payload].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) }
    }

    /// The JSON lines of every sample, each ended by "\n" (what the stdout and file publishers write).
    package var jsonLines: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for span in spans {
            out += bytes[span.payload]
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// The header fields of the record at `offset`, or nil when no record header starts there.
    package static func header(in bytes: UnsafeRawBufferPointer, at offset: Int)
        -> (payloadLength: Int, samples: Int, checksum: UInt32)? {
        guard offset >= 0, offset + headerBytes <= bytes.count,
              bytes[offset] == magic[0], bytes[offset + 1] == magic[1], bytes[offset + 2] == magic[2],
              bytes[offset + 3] == magic[3]
        else { return nil }
        func uint32(_ at: Int) -> UInt32 { bytes.loadUnaligned(fromByteOffset: offset + at, as: UInt32.self).littleEndian }
        return (Int(uint32(4)), Int(uint32(8)), uint32(12))
    }
}

/// Builds records as samples are written into them: a record is sealed when it holds `samplesPerRecord` samples
/// (or when asked), and sealed records can be taken away while the open one keeps filling.
package struct RecordWriter: Sendable {
    package let samplesPerRecord: Int
    /// Bytes reserved for the buffer each time it starts anew.
    private let capacity: Int
    private var records = SampleRecords()
    /// Where the open record's header starts, and how many samples it holds.
    private var openStart: Int?
    private var openSamples = 0
    /// A buffer given back by `recycle`, emptied, for the next `takeSealed`: a cycle's chunks take turns with two
    /// buffers rather than each touching new memory.
    private var spare: [UInt8] = []

    /// `capacity` bytes are reserved up front (and again after each `takeSealed`).
    package init(samplesPerRecord: Int, capacity: Int = 0) {
        self.samplesPerRecord = max(1, samplesPerRecord)
        self.capacity = capacity
        records.bytes.reserveCapacity(capacity)
    }

    /// The bytes held now, sealed and open records.
    package var byteCount: Int { records.bytes.count }

    /// Writes one sample with `write`, which appends its JSON dict to the buffer it is given and returns whether it
    /// wrote anything. Returns what `write` returned.
    @discardableResult
    package mutating func append(_ write: (inout [UInt8]) -> Bool) -> Bool {
        let mark = records.bytes.count
        if openStart == nil {
            openStart = mark
            records.bytes += SampleRecords.magic
            records.bytes += [UInt8](repeating: 0, count: SampleRecords.headerBytes - SampleRecords.magic.count)
        } else {
            records.bytes.append(UInt8(ascii: "\n"))
        }
        guard write(&records.bytes) else {
            records.bytes.removeSubrange(mark...)
            if openSamples == 0 { openStart = nil }
            return false
        }
        openSamples += 1
        if openSamples == samplesPerRecord { seal() }
        return true
    }

    /// Seals the open record, if any: its length, sample count and CRC go in its header.
    package mutating func seal() {
        guard let start = openStart else { return }
        let length = records.bytes.count - start - SampleRecords.headerBytes
        let samples = UInt32(openSamples)
        records.bytes.withUnsafeMutableBytes { raw in
            let header = raw.baseAddress! + start
            header.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 4, as: UInt32.self)
            header.storeBytes(of: samples.littleEndian, toByteOffset: 8, as: UInt32.self)
            let crc = virtmeter_crc32c(virtmeter_crc32c(0, header + 8, 4), header + SampleRecords.headerBytes, length)
            header.storeBytes(of: crc.littleEndian, toByteOffset: 12, as: UInt32.self)
        }
        records.spans.append(SampleRecords.Span(start: start, payloadLength: length, samples: openSamples))
        openStart = nil
        openSamples = 0
    }

    /// Takes the sealed records away; the open record stays and keeps filling.
    package mutating func takeSealed() -> SampleRecords {
        var open: [UInt8] = []
        swap(&open, &spare)
        open.reserveCapacity(capacity)
        if let start = openStart {
            open += records.bytes[start...]
            records.bytes.removeSubrange(start...)
            openStart = 0
        }
        let sealed = records
        records = SampleRecords(bytes: open, spans: [])
        return sealed
    }

    /// Gives back the bytes of records taken before, once delivered, to be written over.
    package mutating func recycle(_ records: consuming SampleRecords) {
        var bytes: [UInt8] = []
        swap(&bytes, &records.bytes)   // the only reference left, or `removeAll` would allocate anew
        bytes.removeAll(keepingCapacity: true)
        if bytes.capacity > spare.capacity { spare = bytes }
    }

    /// Seals the open record and takes everything.
    package mutating func takeAll() -> SampleRecords {
        seal()
        return takeSealed()
    }
}

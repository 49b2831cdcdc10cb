/// Turns meters' readings into wire samples: the domain's resource_metadata (from nova's XML), owner ids,
/// timestamps, a v1 message_id, and the signature, written as the samples' final bytes.
package struct SampleStamper: Sendable {
    /// This compute host's name (`instance_host`).
    package let host: String
    /// The sample `source` (`openstack`).
    package let source: String
    package let signer: SampleSigner
    private let ids = UUIDv1Generator()

    package init(host: String, source: String = "openstack", signer: SampleSigner) {
        self.host = host
        self.source = source
        self.signer = signer
    }

    /// A domain's metadata and resources' fields, built and rendered once and reused for all its samples (and by the
    /// `Poller` for later cycles while `key` stays the same).
    package struct PreparedDomain: Sendable {
        /// What the metadata was built from: when a snapshot has another key, prepare it again.
        package let key: MetadataKey
        let metadata: RenderedMetadata
        /// The metadata with extra keys of the domain's own readings merged in (`cpu_number`), per set of keys seen.
        var merged: [(extra: [(String, JSONValue)], metadata: RenderedMetadata)] = []
        /// The fields of the domain's own resource, once a reading of it was written.
        var domainFields: RenderedFields?
        /// Each device seen so far (disks, interfaces): the object it was seen by, its resource's fields and the
        /// metadata with its keys (`disk_name: vda`) merged in.
        var devices: [Rendered] = []

        struct Rendered {
            var device: DeviceResource
            let fields: RenderedFields
            let metadata: RenderedMetadata
        }

        /// What a reading's sample shares with the domain's other samples, kept by `self`: its resource's fields (nil
        /// until `keep`) and its metadata. Devices are found by the object, which the built-in meters' readings share
        /// cycle after cycle, else by content, and then that object is kept instead (the XML read again made new
        /// devices; a declared meter makes its devices each cycle). Neither is retained: this runs for every sample.
        mutating func shared(_ reading: borrowing Reading)
            -> (fields: Unmanaged<RenderedFields>?, metadata: Unmanaged<RenderedMetadata>) {
            guard let device = reading.device else {
                return (domainFields.map { .passUnretained($0) }, .passUnretained(metadata(with: reading.metadata)))
            }
            let key = ObjectIdentifier(device)
            var found = devices.indices.first { ObjectIdentifier(devices[$0].device) == key }
            if found == nil, let index = devices.indices.first(where: { devices[$0].device == device }) {
                devices[index].device = device
                found = index
            }
            guard let index = found else { return (nil, .passUnretained(metadata)) }
            return (.passUnretained(devices[index].fields), .passUnretained(devices[index].metadata))
        }

        /// Keeps the fields of `device`'s resource (nil: the domain's), rendered from its first reading; a device's
        /// metadata is merged with its keys here, once.
        mutating func keep(_ fields: RenderedFields, for device: DeviceResource?) {
            guard let device else {
                domainFields = fields
                return
            }
            devices.append(Rendered(device: device, fields: fields, metadata: metadata.merged(with: device.metadata)))
        }

        private mutating func metadata(with extra: [(String, JSONValue)]) -> RenderedMetadata {
            if extra.isEmpty { return metadata }
            if let index = merged.firstIndex(where: {
                $0.extra.elementsEqual(extra, by: { $0.0 == $1.0 && $0.1 == $1.1 })
            }) {
                return merged[index].metadata
            }
            let new = metadata.merged(with: extra)
            merged.append((extra, new))
            return new
        }
    }

    /// The parts of a snapshot that resource_metadata depends on.
    package struct MetadataKey: Sendable, Equatable {
        let uuid: String, name: String, state: DomainState, vcpuCount: Int, maxMemoryKiB: UInt64
        let nova: NovaMetadata?, architecture: String?, osType: String?

        package init(_ domain: DomainSnapshot) {
            uuid = domain.uuid
            name = domain.name
            state = domain.state
            vcpuCount = domain.vcpuCount
            maxMemoryKiB = domain.maxMemoryKiB
            nova = domain.nova
            architecture = domain.architecture
            osType = domain.osType
        }
    }

    /// Builds and renders `domain`'s resource_metadata.
    package func prepare(_ domain: DomainSnapshot) -> PreparedDomain {
        PreparedDomain(key: MetadataKey(domain), metadata: RenderedMetadata(baseMetadata(domain)))
    }

    /// Writes the samples of `meters` for one domain snapshot to `records`, signed by `encoder`, all stamped with
    /// the same wall-clock time. `prepared` is `prepare(now)`, possibly from an earlier cycle (it keeps what it
    /// merges). Returns the samples written and those refused (a NaN or infinite volume).
    @discardableResult
    package func write(_ now: DomainSnapshot, previous: DomainSnapshot?, meters: [any Meter],
                      prepared domain: inout PreparedDomain, encoder: inout SampleEncoder,
                      to records: inout RecordWriter, wallNanoseconds: Int64 = SampleClock.wallNanoseconds())
        -> (written: Int, refused: Int) {
        let timestamp = SampleClock.utcTimestamp(nanoseconds: wallNanoseconds)
        var cycle: RenderedFields?
        var written = 0, refused = 0
        // Samples are signed `SampleEncoder.batchSize` at a time (`SampleEncoder.signPrepared`): they wait, prepared
        // in the encoder's slots, for the batch to fill; the domain's last ones go as a smaller batch.
        var waiting = 0
        for (position, meter) in meters.enumerated() {
            var meterFields = encoder.knownMeterFields(meter.name, type: meter.type, unit: meter.unit,
                                                       position: position)
            meter.forEachReading(now, previous: previous) { reading in
                // The monotonic time is the snapshot's, as ceilometer's is the time the instance was inspected.
                guard now.monotonicTime.isFinite else {
                    refused += 1
                    return
                }
                var (resourceFields, metadata) = domain.shared(reading)
                if meterFields == nil || resourceFields == nil || cycle == nil {
                    // First sample of this meter, resource or cycle: render what it shares with later ones.
                    let template = Sample(
                        source: source, name: meter.name, type: meter.type, unit: meter.unit, volume: reading.volume,
                        userID: now.nova?.userID, userName: now.nova?.userName, projectID: now.nova?.projectID,
                        projectName: now.nova?.projectName, resourceID: reading.device?.id ?? now.uuid,
                        timestamp: timestamp, resourceMetadata: .null, messageID: "", monotonicTime: now.monotonicTime)
                    meterFields = meterFields ?? encoder.meterFields(template)
                    cycle = cycle ?? RenderedFields(template, scope: .cycle)
                    if resourceFields == nil {
                        domain.keep(RenderedFields(template, scope: .resource), for: reading.device)
                        (resourceFields, metadata) = domain.shared(reading)
                    }
                }
                guard let meterFields, let resourceFields, let cycle else { return }
                // `Shared` does not keep these alive; they live until this call returns: the encoder keeps the meter
                // fields, `domain` its resources' fields and merged metadata, and `cycle` is this call's.
                let shared = SampleEncoder.Shared(meter: .passUnretained(meterFields), resource: resourceFields,
                                                  cycle: .passUnretained(cycle), metadata: metadata)
                let prepared = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: UUIDv1Generator.length) { id in
                    ids.write(wallNanoseconds: wallNanoseconds, to: id.baseAddress!)
                    return encoder.prepare(waiting, volume: reading.volume, messageID: UnsafeBufferPointer(id),
                                           shared: shared)
                }
                guard prepared else {
                    refused += 1
                    return
                }
                waiting += 1
                if waiting == SampleEncoder.batchSize { written += Self.flush(&waiting, &encoder, to: &records) }
            }
        }
        written += Self.flush(&waiting, &encoder, to: &records)
        return (written, refused)
    }

    /// Signs the `waiting` samples prepared in `encoder` and writes them to `records`; returns how many.
    private static func flush(_ waiting: inout Int, _ encoder: inout SampleEncoder, to records: inout RecordWriter)
        -> Int {
        let count = waiting
        guard count > 0 else { return 0 }
        encoder.signPrepared(count)
        for slot in 0..<count { records.append { encoder.writePrepared(slot, to: &$0); return true } }
        waiting = 0
        return count
    }

    /// The domain's resource_metadata as ceilometer's libvirt discovery builds it, in ceilometer's key order. With nova
    /// metadata a missing flavor figure is 0 and a missing flavor id is the flavor's name, as ceilometer has them when
    /// nova's API does not know better; a domain without nova metadata gets its own vCPUs and memory as the flavor.
    package func baseMetadata(_ domain: DomainSnapshot) -> [(String, JSONValue)] {
        let nova = domain.nova
        func int(_ value: Int?) -> JSONValue { value.map { .int(Int64($0)) } ?? (nova == nil ? .null : .int(0)) }
        let flavor = nova?.flavor ?? Flavor(vcpus: domain.vcpuCount, ramMiB: Int(domain.maxMemoryKiB / 1024))
        var flavorPairs: [(String, JSONValue)] = [
            ("id", .string(flavor.id ?? flavor.name)), ("name", .string(flavor.name)), ("vcpus", int(flavor.vcpus)),
            ("ram", int(flavor.ramMiB)), ("disk", int(flavor.diskGiB)), ("ephemeral", int(flavor.ephemeralGiB)),
            ("swap", int(flavor.swapMiB)),
        ]
        if let specs = flavor.extraSpecs { flavorPairs.append(("extra_specs", Self.object(specs))) }
        let rootGiB: Int? = nova == nil ? flavor.diskGiB.flatMap { disk in flavor.ephemeralGiB.map { disk - $0 } }
            : (flavor.diskGiB ?? 0) - (flavor.ephemeralGiB ?? 0)
        let image: JSONValue = nova?.imageID.map { .object([("id", .string($0))]) } ?? .null
        var pairs: [(String, JSONValue)] = [
            ("display_name", .string(nova.map { $0.displayName } ?? domain.name)),
            ("name", .string(domain.name)),
            ("instance_id", .string(domain.uuid)),
            ("instance_type", .string(flavor.name)),
            ("host", .string(SHA224.hexDigest((nova?.projectID ?? "") + host))),
            ("instance_host", .string(host)),
            ("flavor", .object(flavorPairs)),
            ("status", .string(domain.state.status)),
            ("state", .string(domain.state.name)),
            ("task_state", .string("")),
            ("image", image),
            ("image_ref", .string(nova?.imageID)),
            ("image_ref_url", .null),
        ]
        if let meta = nova?.imageMeta { pairs.append(("image_meta", Self.object(meta))) }
        pairs += [
            ("architecture", .string(domain.architecture)),
            ("os_type", .string(domain.osType)),
            ("vcpus", int(flavor.vcpus ?? domain.vcpuCount)),
            ("memory_mb", int(flavor.ramMiB)),
            ("disk_gb", int(flavor.diskGiB)),
            ("ephemeral_gb", int(flavor.ephemeralGiB)),
            ("root_gb", int(rootGiB)),
        ]
        return pairs
    }

    /// Named texts as a JSON object; a later duplicate name replaces the earlier one, as in a Python dict.
    static func object(_ entries: [NamedText]) -> JSONValue {
        var pairs: [(String, JSONValue)] = []
        for entry in entries {
            if let index = pairs.firstIndex(where: { $0.0 == entry.name }) {
                pairs[index].1 = .string(entry.text)
            } else {
                pairs.append((entry.name, .string(entry.text)))
            }
        }
        return .object(pairs)
    }
}

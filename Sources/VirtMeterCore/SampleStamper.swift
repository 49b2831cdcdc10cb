/// Turns meters' readings into wire samples: the domain's resource_metadata (from nova's XML), owner ids,
/// timestamps, a v1 message_id and the signature.
public struct SampleStamper: Sendable {
    /// This compute host's name (`instance_host`).
    public let host: String
    /// The sample `source` (`openstack`).
    public let source: String
    public let signer: SampleSigner
    private let ids = UUIDv1Generator()

    public init(host: String, source: String = "openstack", signer: SampleSigner) {
        self.host = host
        self.source = source
        self.signer = signer
    }

    /// A domain's metadata, built and walked for signing once and reused for all its samples (and by the
    /// `Poller` for later cycles while `key` stays the same).
    public struct PreparedDomain: Sendable {
        /// What the metadata was built from: when a snapshot has another key, prepare it again.
        public let key: MetadataKey
        let metadata: [(String, JSONValue)]
        let segments: SigningSegments
    }

    /// The parts of a snapshot that resource_metadata depends on.
    public struct MetadataKey: Sendable, Equatable {
        let uuid: String, name: String, state: DomainState, vcpuCount: Int, maxMemoryKiB: UInt64
        let nova: NovaMetadata?, architecture: String?, osType: String?

        public init(_ domain: DomainSnapshot) {
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

    /// Builds `domain`'s resource_metadata and walks it for signing.
    public func prepare(_ domain: DomainSnapshot) -> PreparedDomain {
        let metadata = baseMetadata(domain)
        return PreparedDomain(key: MetadataKey(domain), metadata: metadata, segments: SigningSegments(metadata))
    }

    /// The samples of `meters` for one domain snapshot, all stamped with the same wall-clock time. `prepared` is
    /// `prepare(now)`, possibly from an earlier cycle.
    public func samples(_ now: DomainSnapshot, previous: DomainSnapshot?, meters: [any Meter],
                        prepared: PreparedDomain? = nil, wallNanoseconds: Int64 = Clock.wallNanoseconds()) -> [Sample] {
        let domain = prepared ?? prepare(now)
        let timestamp = Clock.utcTimestamp(nanoseconds: wallNanoseconds)
        var samples: [Sample] = []
        var buffer: [UInt8] = []
        for meter in meters {
            for reading in meter.readings(now, previous: previous) {
                var sample = Sample(
                    source: source, name: meter.name, type: meter.type, unit: meter.unit, volume: reading.volume,
                    userID: now.nova?.userID, projectID: now.nova?.projectID,
                    resourceID: reading.resourceID ?? now.uuid, timestamp: timestamp,
                    resourceMetadata: .object(Self.merge(domain.metadata, reading.metadata)),
                    messageID: ids.next(wallNanoseconds: wallNanoseconds), monotonicTime: Clock.monotonic())
                sample.signature = signer.signature(of: sample, metadata: domain.segments,
                                                    extra: SigningSegments(reading.metadata), buffer: &buffer)
                samples.append(sample)
            }
        }
        return samples
    }

    /// `base` with each of `extra`'s keys replacing the same key in place, or appended.
    static func merge(_ base: [(String, JSONValue)], _ extra: [(String, JSONValue)]) -> [(String, JSONValue)] {
        guard !extra.isEmpty else { return base }
        var pairs = base
        for (key, value) in extra {
            if let index = pairs.firstIndex(where: { $0.0 == key }) {
                pairs[index].1 = value
            } else {
                pairs.append((key, value))
            }
        }
        return pairs
    }

    /// The domain's resource_metadata as ceilometer's libvirt discovery builds it, in ceilometer's key order.
    public func baseMetadata(_ domain: DomainSnapshot) -> [(String, JSONValue)] {
        let nova = domain.nova
        let flavor = nova?.flavor ?? Flavor(vcpus: domain.vcpuCount, ramMiB: Int(domain.maxMemoryKiB / 1024))
        func int(_ value: Int?) -> JSONValue { value.map { .int(Int64($0)) } ?? .null }
        let flavorJSON: JSONValue = .object([
            ("id", .string(flavor.id)), ("name", .string(flavor.name)), ("vcpus", int(flavor.vcpus)),
            ("ram", int(flavor.ramMiB)), ("disk", int(flavor.diskGiB)), ("ephemeral", int(flavor.ephemeralGiB)),
            ("swap", int(flavor.swapMiB)),
        ])
        let rootGiB = flavor.diskGiB.flatMap { disk in flavor.ephemeralGiB.map { disk - $0 } }
        let image: JSONValue = nova?.imageID.map { .object([("id", .string($0))]) } ?? .null
        return [
            ("display_name", .string(nova?.displayName ?? domain.name)),
            ("name", .string(domain.name)),
            ("instance_id", .string(domain.uuid)),
            ("instance_type", .string(flavor.name)),
            ("host", .string(SHA224.hexDigest((nova?.projectID ?? "") + host))),
            ("instance_host", .string(host)),
            ("flavor", flavorJSON),
            ("status", .string(domain.state == .running || domain.state == .blocked ? "active" : domain.state.name)),
            ("state", .string(domain.state.name)),
            ("task_state", .string("")),
            ("image", image),
            ("image_ref", .string(nova?.imageID)),
            ("image_ref_url", .null),
            ("architecture", .string(domain.architecture)),
            ("os_type", .string(domain.osType)),
            ("vcpus", int(flavor.vcpus ?? domain.vcpuCount)),
            ("memory_mb", int(flavor.ramMiB)),
            ("disk_gb", int(flavor.diskGiB)),
            ("ephemeral_gb", int(flavor.ephemeralGiB)),
            ("root_gb", int(rootGiB)),
        ]
    }
}

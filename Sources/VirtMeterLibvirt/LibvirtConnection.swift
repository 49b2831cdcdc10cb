import CLibvirt
import Foundation
import Synchronization

/// An open libvirt connection. libvirt connections are thread-safe: `LibvirtHypervisor` makes calls on it from
/// worker threads, and its mutable state is either behind a lock (`stuckCalls`) or touched from the hypervisor's
/// serial queue only (`servesGroups`), which is why it may be `@unchecked Sendable`. Every call in flight holds a
/// strong reference, so a connection given up while a call is stuck on it is closed (by `deinit`) only once that
/// call has returned.
final class LibvirtConnection: @unchecked Sendable {
    let pointer: virConnectPtr
    let uri: String

    /// Calls abandoned at their deadline that have not returned yet.
    let stuckCalls = Mutex(0)

    /// Whether the driver returns the stats groups virtmeter asks for in bulk (QEMU), or only `state.*` (the test
    /// driver), so that per-domain calls must fill them in. Decided once per connection by its first answer with a
    /// domain in it; nil until then. Touched on the hypervisor's queue only.
    var servesGroups: Bool?
    /// Whether the driver reports `balloon.rss` in bulk. QEMU does only for a domain whose job it could take: a
    /// record without it, on a connection that has shown it before, is from a domain that is busy (NOWAIT).
    var servesRSS = false

    private var callbackIDs: [Int32] = []

    /// Opens `uri`, read-only unless `readOnly` is false, and registers `events` for the domain events that make a
    /// cached domain XML stale. Throws `LibvirtError`; must run on the thread that reads the error (any worker).
    init(uri: String, readOnly: Bool, events: DomainEventSink?) throws(LibvirtError) {
        _ = LibvirtError.silenceDefaultHandler
        _ = Self.eventLoop
        let opened = readOnly ? virConnectOpenReadOnly(uri) : virConnectOpen(uri)
        guard let opened else {
            throw LibvirtError.last(readOnly ? "virConnectOpenReadOnly(\(uri))" : "virConnectOpen(\(uri))")
        }
        pointer = opened
        self.uri = uri
        if let events { register(events) }
    }

    /// Whether the connection still works (`virConnectIsAlive`).
    var isAlive: Bool { virConnectIsAlive(pointer) == 1 }

    deinit {
        for id in callbackIDs { virConnectDomainEventDeregisterAny(pointer, id) }
        virConnectClose(pointer)
    }

    /// libvirt's default event loop, registered once per process before the first connection opens, and run by a
    /// thread of its own for the life of the process: it delivers domain events. (No keepalive: a call that
    /// stopped short is abandoned at its deadline, and a connection clogged with such calls replaced.)
    static let eventLoop: Void = {
        guard virEventRegisterDefaultImpl() == 0 else { return }
        let thread = Thread {
            while true { _ = virEventRunDefaultImpl() }
        }
        thread.name = "virtmeter.libvirt.events"
        thread.start()
    }()

    /// Registers for lifecycle events (started, stopped, resumed, defined, migrated, ...) and reboots. A driver
    /// without events (or a failed registration) leaves the XML cache on its age and domain-ID checks.
    private func register(_ sink: DomainEventSink) {
        let lifecycle: virConnectDomainEventCallback = { _, domain, _, _, opaque in
            guard let domain, let opaque else { return 0 }
            Unmanaged<DomainEventSink>.fromOpaque(opaque).takeUnretainedValue().changed(domain)
            return 0
        }
        let reboot: virConnectDomainEventGenericCallback = { _, domain, opaque in
            guard let domain, let opaque else { return }
            Unmanaged<DomainEventSink>.fromOpaque(opaque).takeUnretainedValue().changed(domain)
        }
        let release: virFreeCallback = { opaque in
            if let opaque { Unmanaged<DomainEventSink>.fromOpaque(opaque).release() }
        }
        let registrations: [(Int32, virConnectDomainEventGenericCallback)] = [
            (Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue),
             unsafeBitCast(lifecycle, to: virConnectDomainEventGenericCallback.self)),
            (Int32(VIR_DOMAIN_EVENT_ID_REBOOT.rawValue), reboot),
        ]
        for (event, callback) in registrations {
            let opaque = Unmanaged.passRetained(sink).toOpaque()
            let id = virConnectDomainEventRegisterAny(pointer, nil, event, callback, opaque, release)
            if id >= 0 { callbackIDs.append(id) } else { Unmanaged<DomainEventSink>.fromOpaque(opaque).release() }
        }
    }
}

/// Collects the uuids of domains that started, stopped, rebooted, migrated or were redefined since the last poll;
/// libvirt's event thread adds, the hypervisor takes them at the start of each poll and drops their cached XML.
final class DomainEventSink: Sendable {
    private let uuids = Mutex<Set<String>>([])
    /// Events received since the sink was made (for tests).
    let received = Atomic<Int>(0)

    func changed(_ domain: virDomainPtr) {
        guard let uuid = LibvirtDomain.uuidString(domain) else { return }
        uuids.withLock { _ = $0.insert(uuid) }
        received.add(1, ordering: .relaxed)
    }

    /// The uuids recorded since the last call.
    func take() -> Set<String> { uuids.withLock { let taken = $0; $0 = []; return taken } }
}

/// A domain handle (`virDomainPtr`, referenced), with what libvirt knows about it without a call to the daemon.
/// Immutable; `deinit` drops the reference, so a handle may be passed to worker threads.
final class LibvirtDomain: @unchecked Sendable {
    let pointer: virDomainPtr
    let uuid: String
    let name: String
    /// The running domain's ID (it changes when the domain restarts).
    let id: Int32

    /// Takes a reference to `pointer`; nil when its uuid cannot be read.
    init?(referencing pointer: virDomainPtr) {
        guard let uuid = Self.uuidString(pointer) else { return nil }
        virDomainRef(pointer)
        self.pointer = pointer
        self.uuid = uuid
        name = virDomainGetName(pointer).map { String(cString: $0) } ?? uuid
        id = Int32(bitPattern: virDomainGetID(pointer))
    }

    deinit { virDomainFree(pointer) }

    static func uuidString(_ domain: virDomainPtr) -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(VIR_UUID_STRING_BUFLEN)) { buffer in
            virDomainGetUUIDString(domain, buffer.baseAddress) == 0 ? String(cString: buffer.baseAddress!) : nil
        }
    }
}

import CLibvirt

/// An open libvirt connection. Not thread-safe by itself: `LibvirtHypervisor` uses it from its own serial queue
/// only, which is why it may be `@unchecked Sendable`. `deinit` closes it.
final class LibvirtConnection: @unchecked Sendable {
    let pointer: virConnectPtr
    let uri: String

    /// Opens `uri`, read-only unless `readOnly` is false. Throws `LibvirtError`.
    init(uri: String, readOnly: Bool) throws(LibvirtError) {
        _ = LibvirtError.silenceDefaultHandler
        let opened = readOnly ? virConnectOpenReadOnly(uri) : virConnectOpen(uri)
        guard let opened else {
            throw LibvirtError.last(readOnly ? "virConnectOpenReadOnly(\(uri))" : "virConnectOpen(\(uri))")
        }
        pointer = opened
        self.uri = uri
        self.readOnly = readOnly
    }

    /// Whether the connection was opened with `virConnectOpenReadOnly`.
    var isReadOnly: Bool { readOnly }
    private let readOnly: Bool

    /// Whether the connection still works (`virConnectIsAlive`).
    var isAlive: Bool { virConnectIsAlive(pointer) == 1 }

    deinit { virConnectClose(pointer) }
}

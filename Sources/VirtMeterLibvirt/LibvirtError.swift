import CLibvirt

/// A failed libvirt call: the operation, libvirt's error code and its message.
package struct LibvirtError: Error, CustomStringConvertible, Sendable {
    /// What virtmeter was doing, e.g. `virConnectOpenReadOnly(qemu:///system)`.
    package let operation: String
    /// libvirt's `virErrorNumber` (0 when libvirt set none).
    package let code: Int32
    package let message: String

    package var description: String { "libvirt: \(operation) failed: \(message) (code \(code))" }

    /// Whether the domain is gone (it vanished between listing and reading).
    package var isNoDomain: Bool { code == Int32(VIR_ERR_NO_DOMAIN.rawValue) }

    /// Whether the driver does not implement the call.
    package var isUnsupported: Bool { code == Int32(VIR_ERR_NO_SUPPORT.rawValue) }

    /// A call that had not returned `seconds` after it was made (abandoned, not cancelled: libvirt cannot).
    static func timedOut(_ operation: String, seconds: Double) -> LibvirtError {
        LibvirtError(operation: operation, code: 0, message: "no answer within \(seconds) s")
    }

    /// The error libvirt recorded for the failed call; must run on the thread that made the call.
    static func last(_ operation: String) -> LibvirtError {
        guard let error = virGetLastError() else {
            return LibvirtError(operation: operation, code: 0, message: "unknown error")
        }
        let message = error.pointee.message.map { String(cString: $0) } ?? "unknown error"
        return LibvirtError(operation: operation, code: error.pointee.code, message: message)
    }

    /// Stops libvirt from printing every error to stderr; errors are reported as values instead. Idempotent.
    static let silenceDefaultHandler: Void = {
        virSetErrorFunc(nil) { _, _ in }
    }()
}

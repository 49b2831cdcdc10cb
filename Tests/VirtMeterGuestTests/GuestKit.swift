import Dispatch
import Foundation
import Logging
import Synchronization
import VirtMeterCore
import VirtMeterTestSupport

/// Why the guest tests cannot go on; its text is the test failure's reason.
struct KitError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One guest the kit started: its name and its workload spec (`idle`, `burn=100`, `idle,balloon=none`, ...).
struct KitGuest: Sendable {
    var name: String
    var spec: String
    /// Seconds from `virsh start` to the guest's ready line, as the kit measured it (kit up / start without
    /// --no-wait).
    var bootSeconds: Double?

    var workload: String { String(spec.split(separator: ",").first ?? "") }
    var hasBalloonStats: Bool { !spec.contains("balloon=none") && !spec.contains("stats=0") }
}

/// What the guest printed last about its own memory (`VMTEST mem ...`, KiB).
struct GuestMemory: Sendable {
    var uptime: Double
    var total: UInt64
    var free: UInt64
    var available: UInt64
}

/// The test-guest kit as `scripts/guests/kit up` left it: the environment it wrote (`kit.env`), its guests,
/// their serial logs, and the host side of each guest (qemu's PID and RSS).
struct GuestKit: Sendable {
    let dir: String
    let script: String
    let uri: String
    let domainType: String

    /// The kit described by `VIRTMETER_GUEST_KIT*`; throws the reason when it is not up.
    static func fromEnvironment() throws -> GuestKit {
        let env = ProcessInfo.processInfo.environment
        guard env["VIRTMETER_GUEST_KIT"] == "1", let dir = env["VIRTMETER_GUEST_KIT_DIR"],
              let script = env["VIRTMETER_GUEST_KIT_SCRIPT"]
        else {
            throw KitError("""
                the test-guest kit is not up (VIRTMETER_GUEST_KIT=1 is not set): these tests measure real guests \
                under libvirtd's QEMU driver. Run scripts/test-guests, which brings the kit up (scripts/guests/kit \
                up), runs them and brings it down; when the kit cannot run a guest on this machine it says why.
                """)
        }
        let kit = GuestKit(dir: dir, script: script, uri: env["VIRTMETER_GUEST_URI"] ?? "qemu:///system",
                           domainType: env["VIRTMETER_GUEST_DOMAIN_TYPE"] ?? "?")
        guard FileManager.default.fileExists(atPath: "/run/libvirt/libvirt-sock") else {
            throw KitError("VIRTMETER_GUEST_KIT=1 but libvirtd is not running (no /run/libvirt/libvirt-sock)")
        }
        return kit
    }

    /// The guests with a folder in the kit's state directory.
    func guests() -> [KitGuest] {
        let root = dir + "/guests"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.sorted().compactMap { name in
            guard let written = read(root + "/" + name + "/workload") else { return nil }
            // ",nova" and ",perf" add metadata for the differential test; they change nothing measured here.
            let spec = written.split(separator: ",").filter { $0 != "nova" && $0 != "perf" }.joined(separator: ",")
            let boot = read(root + "/" + name + "/boot-seconds").flatMap(Double.init)
            return KitGuest(name: name, spec: spec, bootSeconds: boot)
        }
    }

    /// The guest's serial console so far ("" when there is none yet).
    func serialLog(_ name: String) -> String {
        guard let data = FileManager.default.contents(atPath: "\(dir)/guests/\(name)/serial.log") else { return "" }
        return String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\r", with: "")
    }

    /// The last whole `VMTEST mem` line of the guest's serial log. The guest writes its console a byte at a time, so
    /// the log's last line may be cut short (or have a kernel message in it) when it is read: such a line is passed
    /// over for the one before it.
    func latestMemory(_ name: String) -> GuestMemory? {
        var lines = serialLog(name).split(separator: "\n", omittingEmptySubsequences: false)
        lines.removeLast()  // what follows the last newline: an unfinished line, or "".
        for line in lines.reversed() where line.hasPrefix("VMTEST mem ") {
            var fields: [String: String] = [:]
            for word in line.split(separator: " ") {
                let pair = word.split(separator: "=", maxSplits: 1)
                if pair.count == 2 { fields[String(pair[0])] = String(pair[1]) }
            }
            if let uptime = fields["uptime"].flatMap(Double.init), let total = fields["MemTotal"].flatMap(UInt64.init),
               let free = fields["MemFree"].flatMap(UInt64.init),
               let available = fields["MemAvailable"].flatMap(UInt64.init) {
                return GuestMemory(uptime: uptime, total: total, free: free, available: available)
            }
        }
        return nil
    }

    /// The qemu process's resident set on the host, KiB (`VmRSS` of the PID libvirt wrote for the domain).
    func hostRSSKiB(_ name: String) -> UInt64? {
        guard let pid = read("/run/libvirt/qemu/\(name).pid"),
              let status = read("/proc/\(pid)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) }
    }

    /// `virsh domstats` for one domain as a dictionary of its `key=value` lines.
    func domstats(_ name: String, _ groups: [String]) async throws -> [String: String] {
        let text = try await virsh(["domstats"] + groups + [name])
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let pair = line.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { values[String(pair[0])] = String(pair[1]) }
        }
        return values
    }

    /// `virsh domstats` for several domains: their `key=value` lines by domain name.
    func domstats(_ names: [String], _ groups: [String]) async throws -> [String: [String: String]] {
        let text = try await virsh(["domstats"] + groups + names)
        var values: [String: [String: String]] = [:]
        var domain = ""
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("Domain: '") {
                domain = String(trimmed.dropFirst("Domain: '".count).dropLast())
                continue
            }
            let pair = trimmed.split(separator: "=", maxSplits: 1)
            if pair.count == 2 { values[domain, default: [:]][String(pair[0])] = String(pair[1]) }
        }
        return values
    }

    /// The CPU weight file of libvirt's `machine` cgroup (v1 `cpu.shares` or v2 `cpu.weight`), its value and the
    /// largest value it takes; nil when there is none.
    func machineCPUWeight() -> (file: String, value: String, highest: String)? {
        for (file, highest) in [("/sys/fs/cgroup/cpu/machine/cpu.shares", "262144"),
                                ("/sys/fs/cgroup/machine/cpu.weight", "10000")] {
            if let value = read(file) { return (file, value, highest) }
        }
        return nil
    }

    /// `virsh dommemstat` for one domain: its `name value` lines (KiB, counts, seconds).
    func dommemstat(_ name: String) async throws -> [String: UInt64] {
        var values: [String: UInt64] = [:]
        for line in try await virsh(["dommemstat", name]).split(separator: "\n") {
            let pair = line.split(separator: " ", omittingEmptySubsequences: true)
            if pair.count == 2, let value = UInt64(pair[1]) { values[String(pair[0])] = value }
        }
        return values
    }

    func virsh(_ arguments: [String]) async throws -> String {
        try await run("/usr/bin/virsh", ["-q", "-c", uri] + arguments)
    }

    /// Runs the kit's entry command (`start`, `destroy`, ...).
    func kit(_ arguments: [String]) async throws -> String {
        try await run(script, arguments)
    }

    private func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Runs a program to its end on a thread of its own (not the cooperative pool) and returns its output; throws
/// with the output when it exits non-zero.
func run(_ path: String, _ arguments: [String]) async throws -> String {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
        DispatchQueue.global().async {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: KitError("cannot run \(path): \(error)"))
                return
            }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let text = String(decoding: data, as: UTF8.self)
            if process.terminationStatus == 0 {
                continuation.resume(returning: text)
            } else {
                let command = ([path] + arguments).joined(separator: " ")
                continuation.resume(throwing: KitError("\(command) exited \(process.terminationStatus): \(text)"))
            }
        }
    }
}

/// Prints one figure for the closing note: `FIGURE name: expected ..., measured ...`.
func figure(_ name: String, expected: String, measured: String, spread: String? = nil) {
    var line = "FIGURE \(name): expected \(expected), measured \(measured)"
    if let spread { line += " (spread \(spread))" }
    print(line)
}

func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

func format(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }

func spread(_ values: [Double], _ digits: Int = 2) -> String {
    guard let low = values.min(), let high = values.max() else { return "none" }
    return "\(format(low, digits))..\(format(high, digits)) over \(values.count)"
}

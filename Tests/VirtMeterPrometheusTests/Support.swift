import Foundation
import Synchronization
import Testing
import VirtMeterCore
import VirtMeterTestSupport

/// What scripts/test-prometheus provides; a test without it fails, naming the variable.
enum TestEnvironment {
    static func required(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            throw TestFailure("\(name) is not set: run the Prometheus tests with scripts/test-prometheus")
        }
        return value
    }

    /// The repository's test-driver node (four domains, three with nova metadata).
    static let testNode = repositoryRoot.appendingPathComponent("etc/virtmeter/test-node.xml").path
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A fresh folder under the temporary directory, removed by `remove()`.
func scratchDirectory(_ name: String) throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-\(name)-\(getpid())")
    try? FileManager.default.removeItem(at: directory)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

/// Runs `executable` with `arguments`, its output in a file (never a pipe a daemon could keep), and returns the
/// exit status and the output.
@discardableResult
func run(_ executable: String, _ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = FileManager.default.temporaryDirectory
        .appendingPathComponent("virtmeter-promtest-\(UUID().uuidString)")
    _ = FileManager.default.createFile(atPath: output.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: output) }
    let handle = try FileHandle(forWritingTo: output)
    process.standardOutput = handle
    process.standardError = handle
    if let input {
        let inputFile = output.appendingPathExtension("in")
        try input.write(to: inputFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: inputFile) }
        process.standardInput = try FileHandle(forReadingFrom: inputFile)
        try process.run()
    } else {
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }
    process.waitUntilExit()
    try handle.close()
    return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
}

/// One HTTP(S) GET with curl: status, body and the seconds it took.
struct HTTPAnswer {
    var status: Int
    var body: String
    var seconds: Double
}

func get(_ url: String, caFile: String? = nil, timeout: Double = 10) throws -> HTTPAnswer {
    let body = FileManager.default.temporaryDirectory
        .appendingPathComponent("virtmeter-promtest-body-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: body) }
    var arguments = ["-s", "-o", body.path, "-w", "%{http_code} %{time_total}", "--max-time", String(timeout)]
    if let caFile { arguments += ["--cacert", caFile] }
    let (_, output) = try run("/usr/bin/curl", arguments + [url])
    let parts = output.split(separator: " ")
    guard parts.count == 2, let status = Int(parts[0]), let seconds = Double(parts[1]) else {
        throw TestFailure("curl \(url): \(output)")
    }
    return HTTPAnswer(status: status, body: (try? String(contentsOf: body, encoding: .utf8)) ?? "", seconds: seconds)
}

/// Polls `condition` every 100 ms until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double, _ condition: () throws -> Bool) async throws -> Bool {
    let start = SampleClock.monotonic()
    while SampleClock.monotonic() - start < seconds {
        if try condition() { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return try condition()
}

/// `virtmeter run` as a process, polling every `interval` seconds, samples on stdout (a file), a virtmeter.yaml with
/// `config` lines, `extra` arguments and environment; its directory is deleted when it is let go of.
func agentProcess(_ name: String, uri: String, interval: Double, meters: [String] = ["'*'"], config: String = "",
                  arguments extra: [String] = [], environment: [String: String] = [:]) throws -> LoggedProcess {
    let directory = try scratchDirectory("prom-agent-\(name)")
    let polling = directory.appendingPathComponent("polling.yaml")
    try "sources:\n  - name: s\n    interval: \(interval)\n    meters: [\(meters.joined(separator: ", "))]\n"
        .write(to: polling, atomically: true, encoding: .utf8)
    let configFile = directory.appendingPathComponent("virtmeter.yaml")
    try ("host: prom-test-host\npublishers:\n  - type: stdout\n" + config)
        .write(to: configFile, atomically: true, encoding: .utf8)
    return try LoggedProcess(virtmeterBinary, [
        "run", "--config", configFile.path, "--connect", uri, "--polling", polling.path,
        "--state-dir", directory.appendingPathComponent("state").path, "--log-level", "debug",
    ] + extra, directory: directory, environment: environment, removesDirectory: true)
}

/// Debian's Prometheus server on loopback, scraping `jobs` every second; stopped on deinit.
final class PrometheusServer {
    let port = freePort()
    private let server: LoggedProcess

    /// `jobs`: (name, target HOST:PORT, CA file for HTTPS or nil for HTTP).
    init(jobs: [(name: String, target: String, caFile: String?)]) throws {
        let binary = try TestEnvironment.required("VIRTMETER_TEST_PROMETHEUS")
        let directory = try scratchDirectory("prometheus-\(jobs.map(\.name).joined(separator: "-"))")
        var config = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            + "scrape_configs:\n"
        for job in jobs {
            config += "  - job_name: \(job.name)\n    static_configs:\n      - targets: ['\(job.target)']\n"
            if let caFile = job.caFile {
                config += "    scheme: https\n    tls_config:\n      ca_file: '\(caFile)'\n"
            }
        }
        let configFile = directory.appendingPathComponent("prometheus.yml")
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        server = try LoggedProcess(binary, [
            "--config.file=\(configFile.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:\(port)",
        ], directory: directory, removesDirectory: true)
    }

    var log: String { server.stdout + server.stderr }

    /// The instant vector of `expression` through the HTTP query API: each series' labels and value.
    func query(_ expression: String) throws -> [(labels: JSONValue, value: String)] {
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? expression
        let answer = try get("http://127.0.0.1:\(port)/api/v1/query?query=\(encoded)")
        guard answer.status == 200 else { return [] }
        let json = try JSONValue.parse(answer.body)
        guard json["status"]?.stringValue == "success", case .array(let results)? = json["data"]?["result"] else {
            throw TestFailure("prometheus query \(expression): \(answer.body)")
        }
        return results.compactMap { result in
            guard case .array(let pair)? = result["value"], pair.count == 2, let value = pair[1].stringValue,
                  let labels = result["metric"] else { return nil }
            return (labels, value)
        }
    }
}

/// A libvirtd of the tests' own, as an unprivileged user (libvirt's session mode: nothing under /run/libvirt, no
/// clash with another libvirtd on the machine), serving the test driver's shared `/default` node on a socket in a
/// folder of its own. The node keeps what clients change only while a client stays connected: a `virsh event` of its
/// own stays connected from the start.
final class OwnLibvirtd {
    let directory: URL
    let process = Process()
    private let holder = Process()
    var uri: String { "test+unix:///default?socket=\(directory.path)/run/libvirt-sock" }

    init() throws {
        let binary = try TestEnvironment.required("VIRTMETER_TEST_LIBVIRTD")
        directory = try scratchDirectory("libvirtd")
        let run = directory.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        for path in [directory.path, run.path] { chown(path, 65534, 65534) }
        try """
            unix_sock_dir = "\(run.path)"
            unix_sock_rw_perms = "0777"
            auth_unix_ro = "none"
            auth_unix_rw = "none"

            """.write(to: directory.appendingPathComponent("libvirtd.conf"), atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", binary,
                             "--config", directory.appendingPathComponent("libvirtd.conf").path]
        process.environment = ["HOME": directory.path, "XDG_RUNTIME_DIR": run.path,
                               "XDG_CONFIG_HOME": directory.appendingPathComponent("config").path,
                               "XDG_CACHE_HOME": directory.appendingPathComponent("cache").path,
                               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let log = directory.appendingPathComponent("log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let start = SampleClock.monotonic()
        while try virsh(["list", "--all"]).status != 0 {
            guard SampleClock.monotonic() - start < 20, process.isRunning else {
                throw TestFailure("own libvirtd did not answer: \(self.log)")
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/virsh")
        holder.arguments = ["-q", "-c", uri, "event", "--all", "--loop"]
        holder.standardOutput = FileHandle.nullDevice
        holder.standardError = FileHandle.nullDevice
        holder.standardInput = FileHandle.nullDevice
        try holder.run()
        Thread.sleep(forTimeInterval: 0.5)
    }

    deinit { stop() }

    /// Ends the daemon and the connection holder (SIGKILL where SIGTERM is not enough within 3 s: libvirtd may wait
    /// for its clients, and its test driver keeps nothing worth a graceful end).
    func stop() {
        for child in [holder, process] where child.isRunning {
            kill(child.processIdentifier, SIGCONT)
            child.terminate()
            let start = SampleClock.monotonic()
            while child.isRunning, SampleClock.monotonic() - start < 3 { Thread.sleep(forTimeInterval: 0.05) }
            if child.isRunning { kill(child.processIdentifier, SIGKILL) }
            child.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("log"), encoding: .utf8)) ?? ""
    }

    @discardableResult
    func virsh(_ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
        try run("/usr/bin/virsh", ["-q", "-c", uri] + arguments, input: input)
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the daemon: its clients' calls hang meanwhile.
    func pause() { kill(process.processIdentifier, SIGSTOP) }
    func resume() { kill(process.processIdentifier, SIGCONT) }
}

/// The `<domain>` elements of the repository's test node, by name.
func testNodeDomains() throws -> [String: String] {
    let text = try String(contentsOfFile: TestEnvironment.testNode, encoding: .utf8)
    var domains: [String: String] = [:]
    var rest = Substring(text)
    while let start = rest.range(of: "<domain "),
          let end = rest.range(of: "</domain>", range: start.upperBound..<rest.endIndex) {
        let xml = String(rest[start.lowerBound..<end.upperBound])
        if let open = xml.range(of: "<name>"), let close = xml.range(of: "</name>") {
            domains[String(xml[open.upperBound..<close.lowerBound])] = xml
        }
        rest = rest[end.upperBound...]
    }
    return domains
}

/// A unix datagram socket at a path of its own, collecting what arrives (sd_notify's messages) on a thread.
final class NotifySocket: Sendable {
    let path: String
    private let fd: Int32
    private let received = Mutex<[String]>([])
    private let open = Atomic(true)

    init(directory: URL) throws {
        path = directory.appendingPathComponent("notify.sock").path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard fd >= 0, bound == 0 else { throw TestFailure("cannot bind \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while open.load(ordering: .relaxed) {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count > 0 {
                    let text = String(decoding: buffer[..<count], as: UTF8.self)
                    received.withLock { $0.append(text) }
                }
            }
        }
        thread.start()
    }

    var messages: [String] { received.withLock { $0 } }

    func close() {
        open.store(false, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.3)
        Glibc.close(fd)
        unlink(path)
    }
}

/// The series lines of an exposition (no comments), for comparisons that ignore order.
func seriesLines(_ text: String) -> [Substring] {
    text.split(separator: "\n").filter { !$0.hasPrefix("#") }
}

/// The value of the first series of `metric` whose line contains every one of `containing`.
func value(in text: String, metric: String, containing: [String] = []) -> String? {
    for line in seriesLines(text) where line.hasPrefix(metric + "{") || line.hasPrefix(metric + " ") {
        guard containing.allSatisfy({ line.contains($0) }) else { continue }
        return line.split(separator: " ").last.map(String.init)
    }
    return nil
}

import ArgumentParser
import CLibvirt
import CLibvirtFloor
import Foundation
import Logging
import VirtMeterCore
import VirtMeterLibvirt

/// `virtmeter benchmark`: the cost of a poll cycle over N test-driver domains, next to the bare libvirt calls.
struct BenchmarkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "benchmark",
        abstract: "Measure poll cycles over generated test-driver nodes of N domains and print the figures."
    )

    @Option(help: "Domain counts, comma-separated.")
    var sizes = "100,1000,5000"

    @Option(help: "Measured cycles per size (after one warm-up cycle that reads every domain's XML).")
    var cycles = 5

    static let disks = ["vda", "vdb"]
    static let interfaces = ["tap0"]

    func run() async throws {
        bootstrapLogging(.error)
        try await reportingErrors {
            let counts = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }), cycles > 0 else {
                throw CLIError("--sizes needs positive counts and --cycles a positive number")
            }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtmeter-bench-\(getpid())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            print("poll cycle over N test-driver domains, each with nova metadata, 2 disks, 1 interface; "
                  + "median of \(cycles)"
                  + " cycles after a warm-up; CPU = user+system of the whole process; samples signed (HMAC-SHA256)")
            print("meters: 'core' = the 10 instance meters (cpu ... power.state), "
                  + "'all' = every meter incl. disk/network")
            print("domains  meters  floor-wall  floor-cpu  inspect-wall  inspect-cpu  cycle-wall  cycle-cpu  samples"
                  + "  cpu/sample  peak-rss")
            for count in counts {
                let file = directory.appendingPathComponent("node-\(count).xml")
                try Self.nodeXML(domains: count).write(to: file, atomically: true, encoding: .utf8)
                let floor = try floorTimes(uri: "test://" + file.path, expected: count)
                for (label, meters) in [("core", InstanceMeters.all), ("all", MeterRegistry.builtIn.meters)] {
                    try await measure(count: count, uri: "test://" + file.path, label: label, meters: meters,
                                      floor: floor)
                }
            }
        }
    }

    private func measure(count: Int, uri: String, label: String, meters: [any Meter], floor: [(Double, Double)])
        async throws {
        let hypervisor = try LibvirtHypervisor(uri: uri)
        let poller = Poller(hypervisor: hypervisor, meters: meters,
                            stamper: SampleStamper(host: "bench-host", signer: SampleSigner(secret: "bench secret")),
                            logger: Logger(label: "virtmeter.bench"))
        _ = try await poller.cycle()
        var inspect: [(Double, Double)] = [], whole: [(Double, Double)] = [], samples = 0
        for _ in 0..<cycles {
            let (wall, cpu) = try await Self.timed { _ = try await hypervisor.poll() }
            inspect.append((wall, cpu))
            let (cycleWall, cycleCPU) = try await Self.timed { samples = try await poller.cycle().samples.count }
            whole.append((cycleWall, cycleCPU))
        }
        func ms(_ values: [(Double, Double)], _ pick: ((Double, Double)) -> Double) -> String {
            let sorted = values.map(pick).sorted()
            return String(format: "%.1f ms", sorted[sorted.count / 2] * 1000)
        }
        let perSample = (whole.map(\.1).sorted()[whole.count / 2]) / Double(max(1, samples)) * 1e6
        let columns = [
            String(count), label, ms(floor, \.0), ms(floor, \.1), ms(inspect, \.0), ms(inspect, \.1), ms(whole, \.0),
            ms(whole, \.1), String(samples), String(format: "%.2f us", perSample),
            String(format: "%.1f MiB", Self.peakRSSMiB()),
        ]
        let widths = [7, 6, 10, 9, 12, 11, 10, 9, 7, 10, 9]
        print(zip(columns, widths).map { String(repeating: " ", count: max(0, $1 - $0.count)) + $0 }
            .joined(separator: "  "))
    }

    /// The floor: the same libvirt calls, bare, on a connection of its own.
    private func floorTimes(uri: String, expected: Int) throws -> [(Double, Double)] {
        guard let conn = virConnectOpenReadOnly(uri) else { throw CLIError("floor: cannot open \(uri)") }
        defer { virConnectClose(conn) }
        var times: [(Double, Double)] = []
        let disks = Self.disks.map { strdup($0) }, interfaces = Self.interfaces.map { strdup($0) }
        defer { (disks + interfaces).forEach { free($0) } }
        var diskPointers = disks.map { UnsafePointer($0) }, interfacePointers = interfaces.map { UnsafePointer($0) }
        for _ in 0...cycles {
            var checksum: UInt64 = 0
            let wall = Clock.monotonic(), cpu = Self.cpuSeconds()
            let read = virtmeter_floor_cycle(conn, &diskPointers, Int32(disks.count), &interfacePointers,
                                             Int32(interfaces.count), &checksum)
            guard read == expected else { throw CLIError("floor read \(read) domains, expected \(expected)") }
            times.append((Clock.monotonic() - wall, Self.cpuSeconds() - cpu))
        }
        return Array(times.dropFirst())
    }

    static func timed(_ body: () async throws -> Void) async throws -> (Double, Double) {
        let wall = Clock.monotonic(), cpu = cpuSeconds()
        try await body()
        return (Clock.monotonic() - wall, cpuSeconds() - cpu)
    }

    /// User + system CPU time of the whole process (all threads), in seconds.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// The process's peak resident set so far (VmHWM), in MiB.
    static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    /// A test-driver node with `domains` running domains, each with nova metadata, two disks and one interface.
    static func nodeXML(domains: Int) -> String {
        var xml = "<node>\n<cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>"
            + "<active>2</active><mhz>2400</mhz><model>x86_64</model></cpu>\n<memory>1073741824</memory>\n"
        for i in 0..<domains {
            let uuid = String(format: "b0b0b0b0-0000-4000-8000-%012x", i)
            let mac = String(format: "fa:16:3e:%02x:%02x:%02x", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
            xml += """
            <domain type='test'><name>instance-\(String(format: "%08x", i))</name><uuid>\(uuid)</uuid>
            <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
            <nova:name>bench-\(i)</nova:name><nova:flavor name="m1.small" id="2"><nova:memory>512</nova:memory>
            <nova:disk>1</nova:disk><nova:swap>0</nova:swap><nova:ephemeral>0</nova:ephemeral><nova:vcpus>1</nova:vcpus>
            </nova:flavor><nova:owner><nova:user uuid="u-\(i % 7)">u</nova:user>
            <nova:project uuid="p-\(i % 5)">p</nova:project></nova:owner>
            <nova:root type="image" uuid="img-1"/></nova:instance></metadata>
            <memory unit='MiB'>512</memory><currentMemory unit='MiB'>512</currentMemory><vcpu>1</vcpu>
            <os><type arch='x86_64'>hvm</type></os><devices>
            <disk type='file' device='disk'><source file='/guest/\(i)-a.img'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><source file='/guest/\(i)-b.img'/><target dev='vdb' bus='virtio'/></disk>
            <interface type='bridge'><mac address='\(mac)'/>
            <source bridge='br0'/><target dev='tap0'/><model type='virtio'/></interface>
            <memballoon model='virtio'><stats period='10'/></memballoon></devices></domain>

            """
        }
        return xml + "</node>\n"
    }
}

import CLibvirt
import Foundation
import Logging
import Testing
import VirtMeterTestSupport
import VirtMeterCore
@testable import VirtMeterLibvirt


/// `virsh -r -c URI COMMAND DOMAIN` parsed into key/value pairs (`Max memory: 2097152 KiB`, `actual 2097152`).
func virsh(_ command: String, _ domain: String) throws -> [String: String] {
    let result = try runProgram("/usr/bin/virsh", ["-r", "-c", testNodeURI, command, domain])
    guard result.status == 0 else { throw LibvirtError(operation: "virsh \(command)", code: 0, message: result.stderr) }
    var values: [String: String] = [:]
    for line in result.stdout.split(separator: "\n") {
        let separator: Character = line.contains(":") ? ":" : " "
        guard let split = line.firstIndex(of: separator) else { continue }
        values[line[..<split].trimmingCharacters(in: .whitespaces)] =
            line[line.index(after: split)...].trimmingCharacters(in: .whitespaces)
    }
    return values
}

func kib(_ text: String?) -> UInt64? { text.flatMap { UInt64($0.replacingOccurrences(of: " KiB", with: "")) } }

@Suite("LibvirtHypervisor against libvirt's test driver")
struct TestDriverTests {
    @Test("every domain of the node file is read, with the values virsh reports")
    func matchesVirsh() async throws {
        let hypervisor = try LibvirtHypervisor(uri: testNodeURI)
        #expect(hypervisor.isReadOnly)
        let snapshots = try await hypervisor.poll()
        #expect(snapshots.map(\.name).sorted() == ["instance-0000002a", "instance-0000002b", "instance-0000002c", "plain-vm"])
        for snapshot in snapshots {
            let info = try virsh("dominfo", snapshot.name)
            #expect(info["UUID"] == snapshot.uuid)
            #expect(info["State"] == "running" && snapshot.state == .running)
            #expect(Int(info["CPU(s)"] ?? "") == snapshot.vcpuCount)
            #expect(kib(info["Max memory"]) == snapshot.maxMemoryKiB)
            #expect(kib(info["Used memory"]) == snapshot.memoryKiB)
            // The test driver's CPU time follows the wall clock: equal within the seconds between the two reads.
            let virshCPU = try #require(Double(info["CPU time"]?.replacingOccurrences(of: "s", with: "") ?? ""))
            let cpu = try #require(snapshot.totalCPUTime)
            #expect(abs(virshCPU - Double(cpu) / 1e9) < 30, "\(snapshot.name): virsh \(virshCPU) s, snapshot \(cpu) ns")

            let memory = try virsh("dommemstat", snapshot.name)
            #expect(UInt64(memory["actual"] ?? "") == snapshot.balloon.actual)
            #expect(UInt64(memory["available"] ?? "") == snapshot.balloon.available)
            #expect(UInt64(memory["unused"] ?? "") == snapshot.balloon.unused)
            #expect(UInt64(memory["usable"] ?? "") == snapshot.balloon.usable)
            #expect(UInt64(memory["rss"] ?? "") == snapshot.balloon.rss)
            #expect(UInt64(memory["swap_in"] ?? "") == snapshot.balloon.swapIn)
            #expect(UInt64(memory["swap_out"] ?? "") == snapshot.balloon.swapOut)
        }
        let counters = hypervisor.lastCounters
        #expect(counters.domains == 4 && counters.skippedDomains == 0)
        // libvirt 9's test driver returns only state.* in bulk: every domain needed per-domain calls.
        #expect(counters.fallbackDomains == 4)
    }

    @Test("disks and interfaces come with their counters, as domblkstat and domifstat report them")
    func devices() async throws {
        let snapshots = try await LibvirtHypervisor(uri: testNodeURI).poll()
        let db = try #require(snapshots.first { $0.name == "instance-0000002b" })
        #expect(db.disks.map(\.name) == ["vda", "vdb", "vdc"])
        #expect(db.interfaces.map(\.name) == ["tap1c2d3e4f-22", "tap5a6b7c8d-33"])
        #expect(db.interfaces.map(\.mac) == ["fa:16:3e:44:55:66", "fa:16:3e:77:88:99"])
        #expect(db.disks.allSatisfy { $0.readBytes != nil && $0.writeRequests != nil && $0.capacity != nil })
        // Each device comes with its resource id and metadata, built once with the XML as the meters would build them.
        for disk in db.disks { #expect(disk.resource == .disk(disk.name, domainUUID: db.uuid), "\(disk.name)") }
        for nic in db.interfaces {
            #expect(nic.resource?.id == "\(db.name)-\(db.uuid)-\(nic.name)")
            #expect(nic.resource == .interface(nic, domainName: db.name, domainUUID: db.uuid), "\(nic.name)")
        }
        let info = try runProgram("/usr/bin/virsh", ["-r", "-c", testNodeURI, "domblkinfo", "instance-0000002b", "vdb"])
        #expect(info.stdout.contains("Capacity:       \(db.disks[1].capacity ?? 0)"))
        let plain = try #require(snapshots.first { $0.name == "plain-vm" })
        #expect(plain.disks.isEmpty && plain.interfaces.map(\.name) == ["tap9f8e7d6c-44"])
        #expect(plain.interfaces.first?.rxPackets != nil)
    }

    @Test("disks' and interfaces' stats are read only while a polled meter reads them")
    func devicesOnlyWhenPolled() async throws {
        let hypervisor = try LibvirtHypervisor(uri: testNodeURI)
        hypervisor.request(StatsFieldRequest(meters: InstanceMeters.all))
        _ = try await hypervisor.poll()   // reads and caches the XML
        let core = try await hypervisor.poll()
        let coreCalls = hypervisor.lastCounters.perDomainCalls
        #expect(core.count == 4 && core.allSatisfy { $0.disks.isEmpty && $0.interfaces.isEmpty })
        hypervisor.request(StatsFieldRequest(meters: InstanceMeters.all + DiskMeters.all))
        let withDisks = try await hypervisor.poll()
        #expect(withDisks.first { $0.name == "instance-0000002b" }?.disks.map(\.name) == ["vda", "vdb", "vdc"])
        #expect(withDisks.allSatisfy { $0.interfaces.isEmpty })
        #expect(hypervisor.lastCounters.perDomainCalls > coreCalls, "the disks' calls are made now")
        hypervisor.request(StatsFieldRequest(meters: MeterRegistry.builtIn.meters))
        let all = try await hypervisor.poll()
        #expect(all.first { $0.name == "plain-vm" }?.interfaces.map(\.name) == ["tap9f8e7d6c-44"])
    }

    @Test("nova metadata is parsed from namespaces 1.1 and 1.0, and absent where nova wrote none")
    func novaMetadata() async throws {
        let snapshots = try await LibvirtHypervisor(uri: testNodeURI, options: InspectionOptions(namesFromNova: true)).poll()
        let byName = Dictionary(uniqueKeysWithValues: snapshots.map { ($0.name, $0) })
        let web = try #require(byName["instance-0000002a"]?.nova)
        #expect(web == NovaMetadata(
            displayName: "web-01",
            flavor: Flavor(id: "2", name: "m1.small", vcpus: 2, ramMiB: 2048, diskGiB: 20, ephemeralGiB: 0, swapMiB: 0),
            userID: "9d0a3f5c2c6b4b8b9f0e1f2a3b4c5d6e", userName: "alice", projectID: "5b1c7d3e4f5a4b6c8d9e0f1a2b3c4d5e",
            projectName: "web", imageID: "5f1e3c2a-9b1d-4c6e-8a7f-0e2d4b6c8a10"))
        let db = try #require(byName["instance-0000002b"]?.nova)
        #expect(db.flavor.ephemeralGiB == 20 && db.flavor.swapMiB == 1024 && db.imageID == nil)
        let legacy = try #require(byName["instance-0000002c"]?.nova)
        #expect(legacy.displayName == "legacy-01" && legacy.flavor.name == "m1.tiny" && legacy.flavor.id == nil)
        #expect(legacy.projectID == "deadbeefdeadbeefdeadbeefdeadbeef")
        #expect(byName["plain-vm"]?.nova == nil)
        #expect(byName["plain-vm"]?.architecture == "x86_64" && byName["plain-vm"]?.osType == "hvm")
    }

    @Test("a domain that goes away between cycles is dropped, one that comes back is read again")
    func vanishingDomain() async throws {
        // test:///default is one driver shared by the process: a second, read-write connection changes it.
        let control = try #require(virConnectOpen("test:///default"))
        defer { virConnectClose(control) }
        let hypervisor = try LibvirtHypervisor(uri: "test:///default")
        #expect(try await hypervisor.poll().map(\.name) == ["test"])
        let domain = try #require(virDomainLookupByName(control, "test"))
        defer { virDomainFree(domain) }
        #expect(virDomainDestroy(domain) == 0)
        // Shut off: read for its metadata only (ceilometer's flavor-size meters), not sampled.
        let stopped = try await hypervisor.poll()
        #expect(stopped.map(\.name) == ["test"] && stopped.allSatisfy { $0.metadataOnly && $0.state == .shutoff })
        // With sample_shut_off_domains: state, vCPUs, memory as virDomainGetInfo has them, no cpu time.
        let sampling = try LibvirtHypervisor(uri: "test:///default", options: InspectionOptions(sampleShutOffDomains: true))
        let shutOff = try #require(try await sampling.poll().first)
        #expect(!shutOff.metadataOnly && shutOff.state == .shutoff && shutOff.cpuTime == nil)
        #expect(shutOff.vcpuCount > 0 && shutOff.balloon.actual == shutOff.memoryKiB && shutOff.memoryKiB > 0)
        #expect(virDomainCreate(domain) == 0)
        #expect(try await hypervisor.poll().map(\.name) == ["test"])
    }

    @Test("an unreachable libvirt is one clear error")
    func unreachable() {
        do {
            _ = try LibvirtHypervisor(uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
            Issue.record("connected to a socket that does not exist")
        } catch {
            #expect(error.description.contains("virConnectOpenReadOnly(qemu+unix:///system"))
            #expect(!error.description.contains("\n"))
        }
    }
}

@Suite("nova metadata parser")
struct DomainXMLTests {
    @Test("malformed XML is an error, not a crash")
    func malformed() {
        #expect(throws: DomainXMLError.self) { try DomainXML(parsing: "<domain><metadata><nova:instance") }
        #expect(throws: DomainXMLError.self) { try DomainXML(parsing: "") }
    }

    @Test("entity expansion and huge text are bounded")
    func hostile() throws {
        let laughs = """
        <?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
        <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
        <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>
        <domain><metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
        <nova:name>&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;</nova:name></nova:instance></metadata></domain>
        """
        if let parsed = try? DomainXML(parsing: laughs) {
            #expect((parsed.nova?.displayName?.utf8.count ?? 0) <= DomainXML.maxTextLength)
        }
        let huge = "<domain><metadata><nova:instance xmlns:nova=\"http://openstack.org/xmlns/libvirt/nova/1.1\"><nova:name>"
            + String(repeating: "x", count: 1_000_000) + "</nova:name></nova:instance></metadata></domain>"
        let parsed = try DomainXML(parsing: huge)
        #expect(parsed.nova?.displayName?.utf8.count == DomainXML.maxTextLength)
    }

    @Test("a non-numeric flavor value leaves only that field empty")
    func badNumbers() throws {
        let xml = """
        <domain><metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1"><nova:name>n</nova:name>
        <nova:flavor name="f"><nova:memory>lots</nova:memory><nova:vcpus>2</nova:vcpus></nova:flavor></nova:instance>
        </metadata></domain>
        """
        let nova = try #require(try DomainXML(parsing: xml).nova)
        #expect(nova.flavor.ramMiB == nil && nova.flavor.vcpus == 2 && nova.displayName == "n")
    }
}

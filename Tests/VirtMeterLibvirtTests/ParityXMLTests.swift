import Testing
import VirtMeterTestSupport
import VirtMeterCore
@testable import VirtMeterLibvirt

@Suite("what ceilometer reads from the domain XML, and the inspection options")
struct ParityXMLTests {
    static let xml = """
        <domain type='kvm'>
          <name>instance-00000001</name>
          <metadata>
            <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
              <nova:name>web-01</nova:name>
              <nova:flavor name="m1.small" id="2">
                <nova:memory>2048</nova:memory>
                <nova:vcpus>2</nova:vcpus>
                <nova:extraSpecs>
                  <nova:extraSpec name="hw:cpu_policy">dedicated</nova:extraSpec>
                  <nova:extraSpec name="hw:mem_page_size"/>
                </nova:extraSpecs>
              </nova:flavor>
              <nova:owner>
                <nova:user uuid="u1">alice</nova:user>
                <nova:project uuid="p1">web</nova:project>
              </nova:owner>
              <nova:root type="image" uuid="img-1"/>
              <nova:image uuid="img-1">
                <nova:containerFormat>bare</nova:containerFormat>
                <nova:diskFormat>qcow2</nova:diskFormat>
                <nova:minDisk>1</nova:minDisk>
                <nova:minRam>0</nova:minRam>
                <nova:properties>
                  <nova:property name="hw_rng_model">virtio</nova:property>
                </nova:properties>
              </nova:image>
            </nova:instance>
          </metadata>
          <os><type arch='x86_64'>hvm</type></os>
          <perf><event name='cpu_cycles' enabled='yes'/><event name='cmt' enabled='no'/></perf>
          <devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/d/disk'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/d/raw'/><target dev='vdb' bus='virtio'/></disk>
            <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>
            <interface type='bridge'>
              <mac address='fa:16:3e:00:00:02'/>
              <source bridge='br-int'/>
              <virtualport type='openvswitch'><parameters interfaceid='port-1'/></virtualport>
              <target dev='tap1'/>
              <filterref filter='nova-instance-1'><parameter name='IP' value='192.0.2.5'/></filterref>
            </interface>
            <interface type='user'><mac address='52:54:00:00:00:09'/></interface>
          </devices>
        </domain>
        """

    @Test("extra specs, image meta, vNIC filterref/virtualport/bridge, disks without a source, perf events")
    func parse() throws {
        let parsed = try DomainXML(parsing: Self.xml)
        let nova = try #require(parsed.nova)
        #expect(nova.isComplete && nova.userName == "alice" && nova.projectName == "web")
        #expect(nova.flavor.extraSpecs == [NamedText("hw:cpu_policy", "dedicated"), NamedText("hw:mem_page_size", nil)])
        #expect(nova.imageMeta == [
            NamedText("base_image_ref", "img-1"), NamedText("container_format", "bare"),
            NamedText("disk_format", "qcow2"), NamedText("min_disk", "1"), NamedText("min_ram", "0"),
            NamedText("hw_rng_model", "virtio"),
        ])
        #expect(parsed.disks == ["vda", "vdb"] && parsed.disksWithoutSource == ["hdc"])
        #expect(parsed.qcow2FileDisks == ["vda"])
        #expect(parsed.perfEnabled)
        // The user-mode interface has no host-side device: ceilometer skips it, and so does virtmeter.
        let nic = try #require(parsed.interfaces.first)
        #expect(parsed.interfaces.count == 1)
        #expect(nic.name == "tap1" && nic.mac == "fa:16:3e:00:00:02" && nic.bridge == "br-int")
        #expect(nic.filterRef == "nova-instance-1" && nic.interfaceID == "port-1")
        #expect(nic.filterParameters == [NamedText("ip", "192.0.2.5")])
    }

    @Test("disk allocation as virDomainGetBlockInfo has it: physical size for a qcow2 file or without an offset")
    func allocation() {
        var qcow2 = DiskStats(name: "vda")
        qcow2.allocation = 0            // bulk: the highest written offset
        qcow2.physical = 200_704
        qcow2.alignAllocation(qcow2File: true)
        #expect(qcow2.allocation == 200_704)
        var raw = DiskStats(name: "vdb")
        raw.allocation = 4096
        raw.physical = 1 << 30
        raw.alignAllocation(qcow2File: false)
        #expect(raw.allocation == 4096)
        var unknown = DiskStats(name: "vdc")
        unknown.physical = 8192
        unknown.alignAllocation(qcow2File: false)
        #expect(unknown.allocation == 8192)
    }

    @Test("older nova metadata: no extraSpecs, no image element, nil rather than empty")
    func older() throws {
        let parsed = try DomainXML(parsing: Self.xml.replacingOccurrences(of: "extraSpecs", with: "other")
            .replacingOccurrences(of: "<nova:image ", with: "<nova:other ")
            .replacingOccurrences(of: "</nova:image>", with: "</nova:other>"))
        #expect(parsed.nova?.flavor.extraSpecs == nil && parsed.nova?.imageMeta == nil)
        let incomplete = try DomainXML(parsing: Self.xml.replacingOccurrences(of: "<nova:name>web-01</nova:name>",
                                                                             with: ""))
        #expect(incomplete.nova?.isComplete == false)
    }

    @Test("names only when asked for; domains without nova metadata kept by default, skipped when asked")
    func options() async throws {
        let plain = try await LibvirtHypervisor(uri: testNodeURI).poll()
        #expect(plain.contains { $0.name == "plain-vm" })
        #expect(plain.allSatisfy { $0.nova?.userName == nil && $0.nova?.projectName == nil })
        let skipping = try await LibvirtHypervisor(
            uri: testNodeURI, options: InspectionOptions(namesFromNova: true, domainsWithoutNova: .skip)).poll()
        #expect(Set(skipping.map(\.name)) == ["instance-0000002a", "instance-0000002b", "instance-0000002c"])
        #expect(skipping.first { $0.name == "instance-0000002a" }?.nova?.userName == "alice")
    }
}

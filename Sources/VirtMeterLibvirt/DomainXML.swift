import VirtMeterCore
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What virtmeter needs from a domain's XML: nova's metadata, the disks and interfaces, the OS type.
/// Read once per domain (and again when the domain restarts), not every cycle.
package struct DomainXML: Sendable, Equatable {
    /// A disk's target device (`vda`), for the disks with a `<source>` (an empty CD-ROM drive has none).
    package var disks: [String] = []
    /// Target devices of disks without a `<source>`: ceilometer leaves them out, and so does virtmeter.
    package var disksWithoutSource: [String] = []
    /// Target devices of qcow2 image files: for them `virDomainGetBlockInfo` (what ceilometer reads) reports the
    /// file's physical size as the allocation, while the bulk `block.N.allocation` is the highest written offset.
    package var qcow2FileDisks: [String] = []
    /// The interfaces with a host-side device (`tap…`, `vnet0`) and a MAC address (ceilometer skips the others),
    /// with their filterref, virtualport interface id and source bridge.
    package var interfaces: [InterfaceStats] = []
    /// Whether `<perf>` enables any event.
    package var perfEnabled = false
    package var nova: NovaMetadata?
    package var architecture: String?
    package var osType: String?
    /// Whether the domain has a virtio memballoon, and its statistics period in seconds (`<stats period='N'/>`;
    /// nil when the element is absent, which libvirt shows for period 0: QEMU then keeps the guest's first
    /// figures, from boot, for ever).
    package var hasMemballoon = false
    package var balloonStatsPeriod: Int?
    /// Each disk's resource id and metadata, by target device (`identifyDevices`); the interfaces carry theirs.
    package var diskResources: [String: DeviceResource] = [:]

    /// A domain with nothing known about it.
    package init() {}

    package static func == (lhs: DomainXML, rhs: DomainXML) -> Bool {
        lhs.disks == rhs.disks && lhs.disksWithoutSource == rhs.disksWithoutSource
            && lhs.qcow2FileDisks == rhs.qcow2FileDisks && lhs.nova == rhs.nova
            && lhs.perfEnabled == rhs.perfEnabled && lhs.architecture == rhs.architecture
            && lhs.osType == rhs.osType && lhs.hasMemballoon == rhs.hasMemballoon
            && lhs.balloonStatsPeriod == rhs.balloonStatsPeriod
            && lhs.interfaces == rhs.interfaces
    }

    /// Builds the disks' and interfaces' resource ids and metadata, once for as long as this XML is used.
    package mutating func identifyDevices(domainName: String, domainUUID: String) {
        diskResources = Dictionary(disks.map { ($0, DeviceResource.disk($0, domainUUID: domainUUID)) },
                                   uniquingKeysWith: { first, _ in first })
        for index in interfaces.indices {
            interfaces[index].resource = .interface(interfaces[index], domainName: domainName, domainUUID: domainUUID)
        }
    }

    /// The disks' resources, from `diskResources`.
    package func identify(_ disks: inout [DiskStats]) {
        for index in disks.indices { disks[index].resource = diskResources[disks[index].name] }
    }

    /// Nova's metadata namespaces, newest first.
    package static let novaNamespaces = [
        "http://openstack.org/xmlns/libvirt/nova/1.1", "http://openstack.org/xmlns/libvirt/nova/1.0",
    ]

    /// Text longer than this in one element is cut: hostile metadata cannot make virtmeter hold megabytes.
    static let maxTextLength = 4096

    /// Parses a domain's XML. Throws `DomainXMLError` when the XML is not well-formed; missing or malformed parts
    /// of nova's metadata only leave the matching fields nil.
    package init(parsing xml: String) throws(DomainXMLError) {
        let reader = Reader()
        let parser = XMLParser(data: Data(xml.utf8))
        parser.shouldProcessNamespaces = true
        parser.shouldResolveExternalEntities = false
        parser.delegate = reader
        let parsed = parser.parse()
        guard parsed, reader.closedRoot, !reader.failed else {
            throw DomainXMLError(reason: parser.parserError.map { "\($0.localizedDescription)" } ?? "not well-formed")
        }
        self = reader.result
    }
}

/// A domain XML that could not be parsed.
package struct DomainXMLError: Error, CustomStringConvertible {
    package let reason: String
    package var description: String { "domain XML is malformed: \(reason)" }
}

/// The SAX reader behind `DomainXML`: tracks the element path, fills in what it recognises.
private final class Reader: NSObject, XMLParserDelegate {
    var result = DomainXML()
    private var path: [String] = []
    private var text = ""
    private var novaDepth: Int?
    private var nova = NovaMetadata()
    /// The `name` attribute of the extra spec or image property being read.
    private var propertyName: String?
    /// Whether the current element had any text (ceilometer sends null for an element without).
    private var hasText = false
    private var interface = InterfaceStats(name: "")
    private var interfaceHasTarget = false
    private var diskTarget: String?
    private var diskHasSource = false
    private var diskIsFile = false
    private var diskIsQcow2 = false
    /// Whether the document's root element was closed: a truncated document never gets there.
    private(set) var closedRoot = false
    private(set) var failed = false

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) { failed = true }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        path.append(name)
        text = ""
        hasText = false
        if novaDepth == nil, name == "instance", path.count == 3, path[1] == "metadata",
           let namespace = namespaceURI, DomainXML.novaNamespaces.contains(namespace), result.nova == nil {
            novaDepth = path.count
            return
        }
        if let depth = novaDepth {
            novaElement(name, relative: Array(path[depth...]), attributes: attributes)
            return
        }
        switch (path.count, name) {
        case (3, "type") where path[1] == "os":
            result.architecture = attributes["arch"]
        case (3, "interface") where path[1] == "devices":
            interface = InterfaceStats(name: "")
            interfaceHasTarget = false
        case (3, "disk") where path[1] == "devices":
            diskTarget = nil
            diskHasSource = false
            diskIsFile = attributes["type"] == "file"
            diskIsQcow2 = false
        case (4, "driver") where path[1] == "devices" && path[2] == "disk":
            diskIsQcow2 = attributes["type"] == "qcow2"
        case (4, "target") where path[1] == "devices" && path[2] == "disk":
            diskTarget = attributes["dev"]
        case (4, "source") where path[1] == "devices" && path[2] == "disk":
            diskHasSource = true
        case (4, "target") where path[1] == "devices" && path[2] == "interface":
            interfaceHasTarget = true
            interface.name = attributes["dev"] ?? ""
        case (4, "mac") where path[1] == "devices" && path[2] == "interface":
            interface.mac = attributes["address"]
        case (4, "source") where path[1] == "devices" && path[2] == "interface":
            interface.bridge = attributes["bridge"]
        case (4, "filterref") where path[1] == "devices" && path[2] == "interface":
            interface.filterRef = attributes["filter"]
        case (5, "parameter") where path[1] == "devices" && path[2] == "interface" && path[3] == "filterref":
            if let name = attributes["name"] { interface.filterParameters.append(NamedText(name.lowercased(),
                                                                                            attributes["value"])) }
        case (5, "parameters") where path[1] == "devices" && path[2] == "interface" && path[3] == "virtualport":
            interface.interfaceID = attributes["interfaceid"]
        case (3, "event") where path[1] == "perf":
            if attributes["enabled"] == "yes" { result.perfEnabled = true }
        case (3, "memballoon") where path[1] == "devices":
            result.hasMemballoon = attributes["model"] != "none"
        case (4, "stats") where path[1] == "devices" && path[2] == "memballoon":
            result.balloonStatsPeriod = attributes["period"].flatMap { Int($0) }
        default: break
        }
    }

    private func novaElement(_ name: String, relative: [String], attributes: [String: String]) {
        switch relative {
        case ["name"]: nova.hasName = true
        case ["flavor"]:
            nova.flavor.name = attributes["name"]
            nova.flavor.id = attributes["id"]
        case ["flavor", "extraSpecs"]: nova.flavor.extraSpecs = []
        case ["image"]:
            nova.imageMeta = []
            if let uuid = attributes["uuid"] { nova.imageMeta?.append(NamedText("base_image_ref", uuid)) }
        case ["image", "properties", "property"]: propertyName = attributes["name"]
        case ["flavor", "extraSpecs", "extraSpec"]: propertyName = attributes["name"]
        case ["owner", "user"]: nova.userID = attributes["uuid"]
        case ["owner", "project"]: nova.projectID = attributes["uuid"]
        case ["root"] where attributes["type"] == "image": nova.imageID = attributes["uuid"]
        default: break
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        hasText = true
        if text.utf8.count < DomainXML.maxTextLength { text += string }
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        let value = String(text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(DomainXML.maxTextLength))
        // The element's text as lxml gives it to ceilometer: untrimmed, nil when there is none.
        let rawText = hasText ? String(text.prefix(DomainXML.maxTextLength)) : nil
        if let depth = novaDepth {
            switch Array(path[depth...]) {
            case []:
                result.nova = nova
                novaDepth = nil
            case ["name"]: nova.displayName = value
            case ["flavor", "memory"]: nova.flavor.ramMiB = Int(value)
            case ["flavor", "disk"]: nova.flavor.diskGiB = Int(value)
            case ["flavor", "swap"]: nova.flavor.swapMiB = Int(value)
            case ["flavor", "ephemeral"]: nova.flavor.ephemeralGiB = Int(value)
            case ["flavor", "vcpus"]: nova.flavor.vcpus = Int(value)
            case ["owner", "user"]: nova.userName = value
            case ["owner", "project"]: nova.projectName = value
            case ["flavor", "extraSpecs", "extraSpec"]:
                if let name = propertyName { nova.flavor.extraSpecs?.append(NamedText(name, rawText)) }
            case ["image", "properties", "property"]:
                if let name = propertyName { nova.imageMeta?.append(NamedText(name, rawText)) }
            case ["image", "containerFormat"]: nova.imageMeta?.append(NamedText("container_format", rawText))
            case ["image", "diskFormat"]: nova.imageMeta?.append(NamedText("disk_format", rawText))
            case ["image", "minDisk"]: nova.imageMeta?.append(NamedText("min_disk", rawText))
            case ["image", "minRam"]: nova.imageMeta?.append(NamedText("min_ram", rawText))
            default: break
            }
        } else if path.count == 3, path[1] == "os", name == "type" {
            result.osType = value
        } else if path.count == 3, path[1] == "devices", name == "interface" {
            if interfaceHasTarget, !interface.name.isEmpty, interface.mac != nil { result.interfaces.append(interface) }
        } else if path.count == 3, path[1] == "devices", name == "disk", let target = diskTarget, !target.isEmpty {
            if diskHasSource { result.disks.append(target) } else { result.disksWithoutSource.append(target) }
            if diskHasSource, diskIsFile, diskIsQcow2 { result.qcow2FileDisks.append(target) }
        }
        path.removeLast()
        text = ""
        hasText = false
        if path.isEmpty { closedRoot = true }
    }
}

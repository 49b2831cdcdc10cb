import VirtMeterCore
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What virtmeter needs from a domain's XML: nova's metadata, the disks and interfaces, the OS type.
/// Read once per domain (and again when the domain restarts), not every cycle.
public struct DomainXML: Sendable, Equatable {
    /// A disk's target device (`vda`).
    public var disks: [String] = []
    /// An interface's host-side device (`tap…`, `vnet0`) and MAC address.
    public var interfaces: [(device: String, mac: String?)] = []
    public var nova: NovaMetadata?
    public var architecture: String?
    public var osType: String?
    /// Whether the domain has a virtio memballoon, and its statistics period in seconds (`<stats period='N'/>`;
    /// nil when the element is absent, which libvirt shows for period 0: QEMU then keeps the guest's first
    /// figures, from boot, for ever).
    public var hasMemballoon = false
    public var balloonStatsPeriod: Int?

    /// A domain with nothing known about it.
    public init() {}

    public static func == (lhs: DomainXML, rhs: DomainXML) -> Bool {
        lhs.disks == rhs.disks && lhs.nova == rhs.nova && lhs.architecture == rhs.architecture
            && lhs.osType == rhs.osType && lhs.hasMemballoon == rhs.hasMemballoon
            && lhs.balloonStatsPeriod == rhs.balloonStatsPeriod
            && lhs.interfaces.elementsEqual(rhs.interfaces) { $0 == $1 }
    }

    /// Nova's metadata namespaces, newest first.
    public static let novaNamespaces = [
        "http://openstack.org/xmlns/libvirt/nova/1.1", "http://openstack.org/xmlns/libvirt/nova/1.0",
    ]

    /// Text longer than this in one element is cut: hostile metadata cannot make virtmeter hold megabytes.
    static let maxTextLength = 4096

    /// Parses a domain's XML. Throws `DomainXMLError` when the XML is not well-formed; missing or malformed parts
    /// of nova's metadata only leave the matching fields nil.
    public init(parsing xml: String) throws {
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
public struct DomainXMLError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "domain XML is malformed: \(reason)" }
}

/// The SAX reader behind `DomainXML`: tracks the element path, fills in what it recognises.
private final class Reader: NSObject, XMLParserDelegate {
    var result = DomainXML()
    private var path: [String] = []
    private var text = ""
    private var novaDepth: Int?
    private var nova = NovaMetadata()
    private var interfaceDevice: String?
    private var interfaceMAC: String?
    /// Whether the document's root element was closed: a truncated document never gets there.
    private(set) var closedRoot = false
    private(set) var failed = false

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) { failed = true }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        path.append(name)
        text = ""
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
            interfaceDevice = nil
            interfaceMAC = nil
        case (4, "target") where path[1] == "devices" && path[2] == "disk":
            if let device = attributes["dev"] { result.disks.append(device) }
        case (4, "target") where path[1] == "devices" && path[2] == "interface":
            interfaceDevice = attributes["dev"]
        case (4, "mac") where path[1] == "devices" && path[2] == "interface":
            interfaceMAC = attributes["address"]
        case (3, "memballoon") where path[1] == "devices":
            result.hasMemballoon = attributes["model"] != "none"
        case (4, "stats") where path[1] == "devices" && path[2] == "memballoon":
            result.balloonStatsPeriod = attributes["period"].flatMap { Int($0) }
        default: break
        }
    }

    private func novaElement(_ name: String, relative: [String], attributes: [String: String]) {
        switch relative {
        case ["flavor"]:
            nova.flavor.name = attributes["name"]
            nova.flavor.id = attributes["id"]
        case ["owner", "user"]: nova.userID = attributes["uuid"]
        case ["owner", "project"]: nova.projectID = attributes["uuid"]
        case ["root"] where attributes["type"] == "image": nova.imageID = attributes["uuid"]
        default: break
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if text.utf8.count < DomainXML.maxTextLength { text += string }
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        let value = String(text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(DomainXML.maxTextLength))
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
            default: break
            }
        } else if path.count == 3, path[1] == "os", name == "type" {
            result.osType = value
        } else if path.count == 3, path[1] == "devices", name == "interface", let device = interfaceDevice {
            result.interfaces.append((device, interfaceMAC))
        }
        path.removeLast()
        text = ""
        if path.isEmpty { closedRoot = true }
    }
}

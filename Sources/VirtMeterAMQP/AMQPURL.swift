/// Where a broker is and how to log in: `amqp://user:password@host:port/vhost` or `amqps://...` for TLS.
/// Its `description` never shows the password.
package struct AMQPURL: Sendable, Equatable, CustomStringConvertible {
    /// Whether the connection uses TLS (`amqps`).
    package var tls: Bool
    /// The broker's host name or address, as the TLS certificate must name it.
    package var host: String
    /// The broker's port (5672, or 5671 for `amqps`, when the URL gives none).
    package var port: Int
    /// The virtual host (`/` when the URL has no path).
    package var vhost: String
    /// The user name (`guest` when the URL has none).
    package var user: String
    /// The password (`guest` when neither the URL nor a file or the environment gives one).
    package var password: String

    /// Parses `text`. The user, password and vhost are percent-decoded (`%2F` is `/`); an empty path is the vhost
    /// `/`. Throws `AMQPError` for another scheme, a missing host, a bad port or a bad percent escape; the error
    /// names the part that is wrong and never quotes the URL (a password may be anywhere in it when it is malformed).
    package init(_ text: String) throws(AMQPError) {
        let scheme: String
        var rest: Substring
        if text.hasPrefix("amqps://") {
            scheme = "amqps"
            rest = text.dropFirst("amqps://".count)
        } else if text.hasPrefix("amqp://") {
            scheme = "amqp"
            rest = text.dropFirst("amqp://".count)
        } else {
            throw AMQPError(operation: "parse URL", message: "the URL must start with amqp:// or amqps://")
        }
        tls = scheme == "amqps"
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        user = "guest"
        password = "guest"
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.percentDecoded(userInfo[..<colon], what: "user")
                password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...], what: "password")
            } else {
                user = try Self.percentDecoded(userInfo, what: "user")
            }
        }
        var hostPart = rest
        var portText: Substring?
        if hostPart.hasPrefix("["), let close = hostPart.firstIndex(of: "]") {
            // [IPv6]:port
            let after = hostPart[hostPart.index(after: close)...]
            portText = after.hasPrefix(":") ? after.dropFirst() : nil
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
        } else if let colon = hostPart.lastIndex(of: ":") {
            portText = hostPart[hostPart.index(after: colon)...]
            hostPart = hostPart[..<colon]
        }
        host = try Self.percentDecoded(hostPart, what: "host")
        guard !host.isEmpty else {
            throw AMQPError(operation: "parse URL", message: "the URL has no host (a '/' in the password must be "
                            + "written %2F, an '@' %40)")
        }
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw AMQPError(operation: "parse URL", message: "the URL's port is not a number from 1 to 65535 "
                                + "(a '/' in the password must be written %2F, an '@' %40)")
            }
            port = value
        } else {
            port = tls ? 5671 : 5672
        }
        vhost = path.isEmpty ? "/" : try Self.percentDecoded(path, what: "vhost")
    }

    /// Parses a list of broker nodes: oslo.messaging's transport URL form `amqp://u1@h1:5672,u2@h2:5673/vhost` (one
    /// scheme, comma-separated `user@host:port` parts, one vhost at the end that every node shares), or full URLs
    /// separated by commas (`amqp://u@h1/vh,amqp://u@h2/vh`, how a YAML list arrives). A part without a path takes
    /// the vhost of the last part. Every node must use the same scheme: `amqp://` and `amqps://` mixed throw, as do
    /// empty parts and whatever `init` refuses. A comma inside a user or password must be written `%2C`.
    package static func list(_ text: String) throws(AMQPError) -> [AMQPURL] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        guard let first = parts.first, first.hasPrefix("amqp://") || first.hasPrefix("amqps://") else {
            throw AMQPError(operation: "parse URL", message: "the URL must start with amqp:// or amqps://")
        }
        let scheme = first.hasPrefix("amqps://") ? "amqps://" : "amqp://"
        var nodes: [(url: AMQPURL, hasPath: Bool)] = []
        for (index, part) in parts.enumerated() {
            guard !part.isEmpty else {
                throw AMQPError(operation: "parse URL", message: "node \(index + 1) of the URL list is empty")
            }
            let full = part.contains("://") ? String(part) : scheme + part
            let url = try AMQPURL(full)
            guard (url.tls ? "amqps://" : "amqp://") == scheme else {
                throw AMQPError(operation: "parse URL", message: "node \(index + 1) of the URL list is \(url.endpoint) "
                                + "with \(url.tls ? "amqps" : "amqp")://, node 1 with \(scheme): amqp:// and amqps:// "
                                + "cannot be mixed in one publisher's nodes")
            }
            nodes.append((url, full.dropFirst(full.hasPrefix("amqps://") ? 8 : 7).contains("/")))
        }
        let vhost = nodes[nodes.count - 1].url.vhost
        return nodes.map { node in
            var url = node.url
            if !node.hasPath { url.vhost = vhost }
            return url
        }
    }

    /// The URL with the password replaced by `***`: safe for logs and error messages.
    package var description: String {
        let hostText = host.contains(":") ? "[\(host)]" : host
        let vhostText = vhost == "/" ? "" : Self.percentEncoded(vhost)
        return "\(tls ? "amqps" : "amqp")://\(Self.percentEncoded(user)):***@\(hostText):\(port)/\(vhostText)"
    }

    /// `host:port`, for messages about the network.
    package var endpoint: String { host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)" }

    static func percentDecoded(_ text: Substring, what: String) throws(AMQPError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%") {
                guard utf8.count >= 2,
                      let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
                else { throw AMQPError(operation: "parse URL", message: "bad percent escape in the \(what)") }
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            let unreserved = scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
                || "-._~".unicodeScalars.contains(scalar)
            if byte < 0x80, unreserved {
                out.unicodeScalars.append(scalar)
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}

/// TLS settings for an `amqps` connection. Peer and host name verification are on unless turned off.
package struct AMQPTLSOptions: Sendable, Equatable {
    /// PEM file of the CA that signed the broker's certificate (nil: only the URL scheme asks for TLS, and the
    /// connection fails verification unless `verifyPeer` is off).
    package var caFile: String?
    /// PEM client certificate, for brokers that ask for one.
    package var certFile: String?
    /// PEM key of `certFile`.
    package var keyFile: String?
    /// Whether the broker's certificate must chain to `caFile`.
    package var verifyPeer: Bool
    /// Whether the broker's certificate must name the URL's host.
    package var verifyHostname: Bool

    /// TLS settings; verification is on by default.
    package init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, verifyPeer: Bool = true,
                verifyHostname: Bool = true) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.verifyPeer = verifyPeer
        self.verifyHostname = verifyHostname
    }
}

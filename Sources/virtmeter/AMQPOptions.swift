import ArgumentParser
import Foundation
import VirtMeterAMQP
import VirtMeterCore

/// Options of the commands that talk to an AMQP broker. The password comes from `--amqp-password-file`, the
/// `VIRTMETER_AMQP_PASSWORD` environment variable, or the URL, in that order, so it need not be on a command line.
struct AMQPOptions: ParsableArguments {
    /// The environment variable that may hold the broker password.
    static let passwordVariable = "VIRTMETER_AMQP_PASSWORD"

    @Option(help: ArgumentHelp("File holding the AMQP password (else $VIRTMETER_AMQP_PASSWORD, else the URL's).",
                               valueName: "path"))
    var amqpPasswordFile: String?

    @Option(help: "Exchange the samples go to (a topic exchange).")
    var exchange = CeilometerAMQP.exchange

    /// Off by default as `CeilometerAMQP.durableExchange` (a flag can only turn it on).
    @Flag(help: "Declare the exchange durable (it must match an existing exchange; ceilometer's is not durable).")
    var exchangeDurable = false

    @Option(help: "Notification topic: the routing key and queue are <topic>.sample.")
    var topic = CeilometerAMQP.topic

    @Option(help: ArgumentHelp("CA certificate (PEM) that signed the broker's certificate, for amqps://.",
                               valueName: "path"))
    var amqpCaFile: String?

    @Option(help: ArgumentHelp("Client certificate (PEM) for amqps://, with --amqp-key-file.", valueName: "path"))
    var amqpCertFile: String?

    @Option(help: ArgumentHelp("Key (PEM) of --amqp-cert-file.", valueName: "path"))
    var amqpKeyFile: String?

    @Flag(help: "Do not check that the broker's certificate names the URL's host (peer verification stays on).")
    var amqpNoVerifyHostname = false

    @Option(help: "AMQP heartbeat in seconds (0: off).")
    var amqpHeartbeat = CeilometerAMQP.heartbeatSeconds

    /// Parses `text` (the first node of a list) and fills in the password from the file or the environment. Errors
    /// never show the password.
    func url(_ text: String) throws -> AMQPURL {
        try nodes(text)[0]
    }

    /// Parses one URL or a cluster's nodes in oslo's form (`amqp://u@h1:5672,u@h2:5673/vhost`) and fills in every
    /// node's password from the file or the environment. Errors never show the password.
    func nodes(_ text: String) throws -> [AMQPURL] {
        let nodes = try Self.nodes(text, passwordFile: amqpPasswordFile, option: "--amqp-password-file")
        if nodes[0].tls == false && (amqpCaFile != nil || amqpCertFile != nil) {
            throw CLIError("--amqp-ca-file and --amqp-cert-file need an amqps:// URL")
        }
        return nodes
    }

    /// The nodes of `text` (one URL, or a cluster's in oslo's form), each with the one password of the cluster's
    /// users: from `passwordFile`, else `$VIRTMETER_AMQP_PASSWORD`, else the URL's. `option` names the file's setting
    /// in the error when it cannot be read. The one password lookup of the command-line options and virtmeter.yaml.
    static func nodes(_ text: String, passwordFile: String?, option: String) throws -> [AMQPURL] {
        var nodes = try AMQPURL.list(text)
        if let password = try password(file: passwordFile, option: option) {
            for index in nodes.indices { nodes[index].password = password }
        }
        return nodes
    }

    /// The broker password from `file` (read as `SecretFile.read` says), else `$VIRTMETER_AMQP_PASSWORD`, else nil
    /// (the URL's, or `guest`).
    private static func password(file: String?, option: String) throws -> String? {
        if let file {
            do {
                return try SecretFile.read(file)
            } catch {
                throw CLIError("\(option): \(error)")
            }
        }
        if let password = ProcessInfo.processInfo.environment[passwordVariable], !password.isEmpty { return password }
        return nil
    }

    /// The TLS settings: verification on, with the given CA and client certificate.
    var tls: AMQPTLSOptions {
        AMQPTLSOptions(caFile: amqpCaFile, certFile: amqpCertFile, keyFile: amqpKeyFile,
                       verifyHostname: !amqpNoVerifyHostname)
    }

    func validate() throws {
        if (amqpCertFile == nil) != (amqpKeyFile == nil) {
            throw ValidationError("--amqp-cert-file and --amqp-key-file go together")
        }
        guard amqpHeartbeat >= 0 else { throw ValidationError("--amqp-heartbeat must not be negative") }
    }
}

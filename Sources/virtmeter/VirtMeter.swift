import ArgumentParser
import Foundation
import Logging
import VirtMeterCore

@main
struct VirtMeter: AsyncParsableCommand {
    /// This build's version (`virtmeter --version`, `virtmeter_build_info`).
    static let version = "0.12.0"

    static let configuration = CommandConfiguration(
        commandName: "virtmeter",
        abstract: "Ceilometer-compatible telemetry for the virtual machines of a libvirt host.",
        version: version,
        subcommands: [
            RunCommand.self, PollCommand.self, MetersCommand.self, TailCommand.self, BenchmarkCommand.self,
            AMQPBenchmarkCommand.self, CheckCommand.self,
        ]
    )

    /// Ignores SIGPIPE before any command runs: a peer that closes its socket (libvirtd restarting, a broker going
    /// away) must surface as an error of that call, not kill the agent.
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            // The monitoring plugin reports even bad arguments as its UNKNOWN line, exit 3.
            if CommandLine.arguments.dropFirst().first == "check" { CheckCommand.exitParsing(error) }
            exit(withError: error)
        }
    }
}

/// A failure worth one line on stderr and a non-zero exit, without a usage dump.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`; any error becomes one line `virtmeter: …` on stderr and exit code 1.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch {
        throw exitCode(reporting: error)
    }
}

/// `reportingErrors` for commands that do not run async.
func reportingErrorsSync(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch {
        throw exitCode(reporting: error)
    }
}

/// Writes `error` as one line `virtmeter: …` on stderr and returns exit code 1; an `ExitCode` passes through.
private func exitCode(reporting error: any Error) -> ExitCode {
    if let code = error as? ExitCode { return code }
    let line = "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
    FileHandle.standardError.write(Data("virtmeter: \(line)\n".utf8))
    return ExitCode(1)
}

/// The signer for a secret file (read as `SecretFile.read` says); no file, no signature.
func loadSigner(_ path: String?) throws -> SampleSigner {
    guard let path else { return SampleSigner(secret: "") }
    do {
        return SampleSigner(secret: try SecretFile.read(path))
    } catch {
        throw CLIError("secret file: \(error)")
    }
}

/// Logging to stderr at `level`; only the executable bootstraps logging.
func bootstrapLogging(_ level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Options shared by the commands that read libvirt and make samples.
struct SamplingOptions: ParsableArguments {
    @Option(name: .customLong("connect"), help: "libvirt connection URI.")
    var uri = "qemu:///system"

    @Option(help: "Meters to poll, comma-separated, with polling.yaml's '*' wildcards and '!' exclusions.")
    var meters = "*"

    @Option(help: ArgumentHelp("File holding the telemetry secret that signs samples (no signature without one).",
                               valueName: "path"))
    var secretFile: String?

    @Option(help: "Host name put in the samples' metadata (default: this machine's).")
    var host: String?

    @Flag(help: "Open libvirt read-write (never needed to monitor; read-only is the default).")
    var readWrite = false

    @Option(help: "Log level on stderr (trace, debug, info, notice, warning, error, critical).")
    var logLevel: Logger.Level = .warning

    @Flag(help: "Sample shut-off domains too (ceilometer's report_stopped_instance_metrics).")
    var sampleShutOffDomains = false

    @Flag(help: "Fill user_name and project_name from the names in nova's domain XML.")
    var userAndProjectNamesFromNova = false

    @Option(help: ArgumentHelp("Domains without nova metadata: keep them, or skip them as ceilometer does.",
                               valueName: "keep|skip"))
    var domainsWithoutNovaMetadata: String = "keep"

    /// The inspection options the flags above give.
    var inspection: InspectionOptions {
        get throws {
            guard let policy = InspectionOptions.DomainsWithoutNova(rawValue: domainsWithoutNovaMetadata) else {
                throw CLIError("--domains-without-nova-metadata: expected keep or skip")
            }
            return InspectionOptions(sampleShutOffDomains: sampleShutOffDomains,
                                     namesFromNova: userAndProjectNamesFromNova, domainsWithoutNova: policy)
        }
    }

    /// The meters selected by `--meters`; unknown plain names are an error that lists the valid ones.
    func selectedMeters(from registry: MeterRegistry) throws -> [any Meter] {
        let selector: MeterSelector
        do {
            selector = try MeterSelector(commaSeparated: meters)
        } catch {
            throw CLIError("--meters: \(error)")
        }
        let unknown = selector.unmatched(among: registry.names)
        guard unknown.isEmpty else {
            throw CLIError("--meters: unknown meter \(unknown.joined(separator: ", ")); valid meters: "
                           + registry.names.joined(separator: ", "))
        }
        let chosen = registry.select(selector)
        guard !chosen.isEmpty else { throw CLIError("--meters: '\(meters)' selects no meter") }
        return chosen
    }

    /// The signer for `--secret-file`.
    func signer() throws -> SampleSigner { try loadSigner(secretFile) }

    var hostName: String { host ?? ProcessInfo.processInfo.hostName }
}


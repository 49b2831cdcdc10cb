import ArgumentParser
import Foundation
import VirtMeterAgent
import VirtMeterCore

/// `virtmeter meters`: the meters virtmeter has, with type, unit and what each measures; declared meters
/// (virtmeter.yaml's `meters_dir`) with the file and line that declare them.
struct MetersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meters",
        abstract: "List the meters (built-in and declared) with their type, unit, origin (ceilometer's, virtmeter's own "
            + "or declared) and a description."
    )

    @Option(help: ArgumentHelp("virtmeter.yaml whose meters_dir declares meters (default: "
                               + "\(AgentConfiguration.defaultFile) when it exists).", valueName: "path"))
    var config: String?

    @Option(help: ArgumentHelp("Directory of declared meters (overrides the config's meters_dir).", valueName: "path"))
    var metersDir: String?

    func run() throws {
        try reportingErrorsSync {
            var directory = metersDir
            if directory == nil, let file = config ?? (FileManager.default.fileExists(
                atPath: AgentConfiguration.defaultFile) ? AgentConfiguration.defaultFile : nil) {
                directory = try AgentConfiguration.load(file: file).metersDirectory
            }
            let meters = try declaredRegistry(directory).meters
            let nameWidth = meters.map(\.name.count).max() ?? 0
            for meter in meters {
                let unit = meter.unit.isEmpty ? "-" : meter.unit
                let declared = meter as? DeclaredMeter
                let origin = declared != nil ? "declared" : meter.isCeilometerMeter ? "ceilometer" : "virtmeter"
                let source = declared.map { "  [declared in \($0.declaration.source)]" } ?? ""
                print(pad(meter.name, nameWidth) + "  " + pad(meter.type.rawValue, 10) + "  " + pad(unit, 7) + "  "
                      + pad(origin, 10) + "  " + meter.summary + source)
            }
            print("\nceilometer: the meter as ceilometer's compute agent sends it; virtmeter: virtmeter's own meter; "
                  + "declared: from a file of meters_dir")
        }
    }

    private func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
}

/// The built-in meters and those declared in `directory` (none without one).
func declaredRegistry(_ directory: String?) throws -> MeterRegistry {
    guard let directory else { return .builtIn }
    return try DeclaredMeters.load(directory: directory).registry()
}

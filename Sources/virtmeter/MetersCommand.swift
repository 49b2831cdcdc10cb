import ArgumentParser
import VirtMeterCore

/// `virtmeter meters`: the meters virtmeter has, with type, unit and what each measures.
struct MetersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meters",
        abstract: "List the meters with their type, unit and a one-line description."
    )

    func run() {
        let meters = MeterRegistry.builtIn.meters
        let nameWidth = meters.map(\.name.count).max() ?? 0
        for meter in meters {
            let unit = meter.unit.isEmpty ? "-" : meter.unit
            print(pad(meter.name, nameWidth) + "  " + pad(meter.type.rawValue, 10) + "  " + pad(unit, 7) + "  "
                  + meter.summary)
        }
    }

    private func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
}

import ArgumentParser
import VirtMeterCore

/// `virtmeter meters`: the meters virtmeter has, with type, unit and what each measures.
struct MetersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meters",
        abstract: "List the meters with their type, unit, origin (ceilometer's or virtmeter's own) and a description."
    )

    func run() {
        let meters = MeterRegistry.builtIn.meters
        let nameWidth = meters.map(\.name.count).max() ?? 0
        for meter in meters {
            let unit = meter.unit.isEmpty ? "-" : meter.unit
            let origin = meter.isCeilometerMeter ? "ceilometer" : "virtmeter"
            print(pad(meter.name, nameWidth) + "  " + pad(meter.type.rawValue, 10) + "  " + pad(unit, 7) + "  "
                  + pad(origin, 10) + "  " + meter.summary)
        }
        print("\nceilometer: the meter as ceilometer's compute agent sends it; virtmeter: virtmeter's own meter")
    }

    private func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
}

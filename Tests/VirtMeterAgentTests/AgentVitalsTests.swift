import Testing
import VirtMeterCore
@testable import VirtMeterAgent

/// /healthz's rules and ceilometer's number format, without a server (the endpoint's own tests are in
/// VirtMeterPrometheusTests, run by scripts/test-prometheus).
@Suite("health and the exporter's numbers")
struct AgentVitalsTests {
    @Test("healthy while cycles complete; 503 reasons: no cycle, libvirt unreachable, spool over its cap")
    func health() {
        let health = AgentHealth(limitIntervals: 3, interval: 10, now: 1000)
        let spool = SpoolCounters()
        #expect(health.problem(spool: spool, now: 1029) == nil)
        #expect(health.problem(spool: spool, now: 1031)?.hasPrefix("no poll cycle completed since start-up for 31 s")
                == true)
        health.cycleCompleted(now: 1040)
        #expect(health.problem(spool: spool, now: 1065) == nil)
        health.libvirtFailed(now: 1041)
        health.libvirtFailed(now: 1050)
        #expect(health.problem(spool: spool, now: 1069) == nil)
        #expect(health.problem(spool: spool, now: 1072) == "libvirt unreachable for 31 s (limit 3 intervals = 30 s)")
        health.cycleCompleted(now: 1090)
        #expect(health.problem(spool: spool, now: 1091) == nil)
        var dropping = spool
        dropping.droppedSamples = 500
        #expect(health.problem(spool: dropping, now: 1095)?.hasPrefix("spool over its cap: 500 samples dropped")
                == true)
        health.cycleCompleted(now: 1110)
        health.cycleCompleted(now: 1120)
        #expect(health.problem(spool: dropping, now: 1126) == nil, "no more dropped within the limit")
        health.setInterval(1)
        #expect(health.problem(spool: dropping, now: 1124)?.hasPrefix("no poll cycle completed for 4 s") == true)
    }

    @Test("prometheus_client's floatToGoString", arguments: [
        (0.0, "0.0"), (5, "5.0"), (-5, "-5.0"), (999_999, "999999.0"), (1_234_567, "1.234567e+06"),
        (123_456_789_000, "1.23456789e+11"), (1e16, "1e+16"), (1.5e22, "1.5e+22"), (0.1, "0.1"), (1e-5, "1e-05"),
        (123456.789, "123456.789"), (1234567.891, "1.234567891e+06"), (-12_345_678, "-12345678.0"),
        (Double.nan, "NaN"), (Double.infinity, "+Inf"), (-Double.infinity, "-Inf"),
    ])
    func numbers(_ number: Double, _ expected: String) {
        #expect(CeilometerFormat.value(number) == expected)
    }

    @Test("labels: the plugin label from the counter name, metadata labels only with metadata, sorted and escaped")
    func labels() {
        #expect(CeilometerFormat.metricName("disk.device.read.bytes") == "ceilometer_disk_device_read_bytes")
        let sample = Sample(source: "openstack", name: "network.incoming.bytes", type: .cumulative, unit: "B",
                            volume: .int(1), userID: nil, projectID: "", resourceID: "r", timestamp: "",
                            resourceMetadata: .object([]), messageID: "", monotonicTime: 0)
        let labels = CeilometerFormat.labels(sample)
        #expect(labels.map(\.0) == ["network", "publisher", "type", "counter", "unit", "resource"])
        #expect(labels.first! == ("network", "bytes") && labels[2] == ("type", "incoming"))
        #expect(CeilometerFormat.labelBlock([("b", "x\"y"), ("a", "1\\2\n")]) == #"{a="1\\2\n",b="x\"y"}"#)
    }
}

import Foundation
import Testing
import VirtMeterCore
import VirtMeterTestSupport

@Suite("declared meters on the bus")
struct DeclaredMeterAMQPTests {
    /// poll --meters-dir --publish: declared samples reach the broker beside built-in ones, and ceilometer's
    /// signature check passes on oslo.messaging's listener.
    @Test("declared samples reach oslo.messaging's listener and pass ceilometer's signature check")
    func declaredOnTheBus() throws {
        let url = try TestBroker.url()
        let python = try TestBroker.variable("VIRTMETER_TEST_PYTHON")
        let secret = "declared test secret"
        let secretFile = try temporaryFile("secret", secret + "\n")
        let meters = try temporaryFile("state.yaml", "meters:\n  - name: domain.state.declared\n    type: gauge\n"
            + "    unit: state\n    summary: libvirt's state number\n    field: state.state\n")
        let exchange = uniqueName("vmtest-decl-ex"), topic = uniqueName("vmtest-decl")
        let poll = try runProgram(virtmeterBinary, [
            "poll", "--connect", amqpNodeURI, "--publish", "amqp://guest@\(url.endpoint)/", "--exchange", exchange,
            "--topic", topic, "--meters-dir", meters.deletingLastPathComponent().path,
            "--meters", "domain.state.declared,vcpus", "--secret-file", secretFile.path,
        ])
        #expect(poll.status == 0, "\(poll.stderr)")
        // Four domains on the test node, two meters each.
        let result = try runProgram(python, [
            repositoryRoot.appendingPathComponent("scripts/oslo-listener-check.py").path,
        ], environment: [
            "VIRTMETER_CHECK_URL": "rabbit://guest:guest@\(url.endpoint)/", "VIRTMETER_CHECK_EXCHANGE": exchange,
            "VIRTMETER_CHECK_TOPIC": topic, "VIRTMETER_CHECK_COUNT": "8", "VIRTMETER_CHECK_TIMEOUT": "30",
            "VIRTMETER_CHECK_SECRET": secret,
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let line = try #require(result.stdout.split(separator: "\n").last)
        let report = try JSONValue.parse(String(line))
        #expect(report["samples"] == .int(8))
        #expect(report["counter_names"] == .array([.string("domain.state.declared"), .string("vcpus")]))
        #expect(report["event_types"] == .array([.string("telemetry.polling")]))
        #expect(report["bad_signatures"] == .int(0))
    }
}

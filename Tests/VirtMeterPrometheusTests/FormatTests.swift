import Foundation
import Logging
import Testing
import VirtMeterAgent
import VirtMeterCore
import VirtMeterLibvirt
import VirtMeterTestSupport

/// The exposition against ceilometer's own exporter (ceilometer.polling.prom_exporter from PyPI, through
/// scripts/ceilometer-exposition.py) fed the same samples.
@Suite("ceilometer's exporter format, byte for byte")
struct FormatTests {
    /// ceilometer's exposition of `samples`.
    func ceilometer(_ samples: [Sample]) throws -> String {
        let python = try TestEnvironment.required("VIRTMETER_TEST_CEILOMETER_PYTHON")
        let script = try TestEnvironment.required("VIRTMETER_TEST_CEILOMETER_SCRIPT")
        let (status, output) = try run(python, [script],
                                       input: samples.map(\.oracleJSON.jsonText).joined(separator: "\n") + "\n")
        guard status == 0 else { throw TestFailure("ceilometer's exporter failed: \(output)") }
        return output
    }

    @Test("a cycle's exposition is what ceilometer's exporter makes of the samples published in that cycle")
    func sameAsCeilometer() async throws {
        let stamper = SampleStamper(host: "compute-7", signer: SampleSigner(secret: "prometheus test"))
        let exposition = CeilometerExposition(stamper: stamper)
        let hypervisor = try LibvirtHypervisor(uri: "test://" + TestEnvironment.testNode)
        var poller = Poller(hypervisor: exposition.observing(hypervisor), stamper: stamper,
                            logger: Logger(label: "test"))
        let group = PollingGroup(name: "all", meters: MeterRegistry.builtIn.meters)
        var published: [Sample] = []
        // Two cycles: the second has the rates and deltas that need the first.
        for _ in 0..<2 {
            published = []
            _ = try await poller.cycle([group]) { records in published += try records.decodedSamples() }
            exposition.cycleCompleted([group])
        }
        let ours = String(decoding: exposition.current, as: UTF8.self)
        let theirs = try ceilometer(published)
        #expect(published.count > 40 && Set(published.map(\.name)).count >= 20)
        // ceilometer's output comes in groups of the same label names (prometheus_client refuses a family whose
        // label names differ: the domain without nova metadata), so the lines are compared as sets.
        let ourSeries = seriesLines(ours), theirSeries = seriesLines(theirs)
        #expect(ourSeries.count == published.count, "one series per published sample")
        #expect(Set(ourSeries) == Set(theirSeries))
        #expect(Set(ourSeries).subtracting(theirSeries).sorted().prefix(3) == [],
                "only in virtmeter's exposition")
        #expect(Set(theirSeries).subtracting(ourSeries).sorted().prefix(3) == [],
                "only in ceilometer's")
        let comments = { (text: String) in Set(text.split(separator: "\n").filter { $0.hasPrefix("#") }) }
        #expect(comments(ours) == comments(theirs))
        #expect(ours.contains(#"ceilometer_memory_usage{counter="memory.usage",flavor_id="2",flavor_name="m1.small""#))

        // The whole text byte for byte where ceilometer has one round (the same label names in every family): the
        // two domains with nova metadata and a flavor id.
        let twoDomains = ["a6b2c4d8-1234-4e5f-9abc-def012345678", "0c7f3a52-5d2e-4f0b-8f7e-2b9a61d4c0e1"]
        let nova = published.filter { twoDomains.contains($0.resourceMetadata["instance_id"]?.stringValue ?? "") }
        #expect(nova.count > 0 && nova.count < published.count)
        let ourNova = CeilometerFormat.render(nova.map(CeilometerFormat.Series.init))
        let theirNova = try ceilometer(nova), ourNovaText = String(decoding: ourNova, as: UTF8.self)
        let firstDifference = zip(ourNovaText.split(separator: "\n"), theirNova.split(separator: "\n"))
            .first { $0 != $1 }.map { "virtmeter: \($0)\nceilometer: \($1)" } ?? "lengths differ"
        #expect(ourNovaText == theirNova, "\(firstDifference)")
    }

    @Test("two sources polling the same meter: each of its series once, in one family")
    func twoSources() async throws {
        let stamper = SampleStamper(host: "compute-7", signer: SampleSigner(secret: ""))
        let exposition = CeilometerExposition(stamper: stamper)
        let hypervisor = try LibvirtHypervisor(uri: "test://" + TestEnvironment.testNode)
        var poller = Poller(hypervisor: exposition.observing(hypervisor), stamper: stamper,
                            logger: Logger(label: "test"))
        func meters(_ names: [String]) -> [any Meter] { names.compactMap { MeterRegistry.builtIn.meter(named: $0) } }
        let groups = [PollingGroup(name: "a", meters: meters(["memory", "vcpus"])),
                      PollingGroup(name: "b", meters: meters(["vcpus", "cpu"]))]
        var published: [Sample] = []
        _ = try await poller.cycle(groups) { records in published += try records.decodedSamples() }
        exposition.cycleCompleted(groups)
        let ours = String(decoding: exposition.current, as: UTF8.self)
        #expect(Set(seriesLines(ours)) == Set(seriesLines(try ceilometer(published))))
        #expect(seriesLines(ours).count == Set(seriesLines(ours)).count, "a series repeated")
        // vcpus is published by both sources (twice per domain) but exposed once per domain: one series per meter and
        // resource published.
        let distinct = Set(published.map { "\($0.name) \($0.resourceID)" })
        #expect(published.filter { $0.name == "vcpus" }.count == 8 && seriesLines(ours).count == distinct.count)
        #expect(ours.components(separatedBy: "# TYPE ceilometer_vcpus gauge\n").count == 2)
    }

    @Test("numbers, escapes, server_group, names without dots, repeated label sets: as ceilometer writes them")
    func edges() throws {
        let volumes: [Volume] = [
            .int(0), .int(1), .int(999_999), .int(1_000_000), .int(1_234_567), .int(123_456_789_000),
            .int(Int64.max), .int(-5), .int(-12_345_678), .double(0.1), .double(1e-5), .double(0.000123),
            .double(123456.789), .double(1234567.891), .double(1e16), .double(1e22), .double(387.890625),
            .double(-0.0), .double(2.5e-7),
        ]
        func sample(_ name: String, _ volume: Volume, resource: String, metadata: JSONValue,
                    project: String? = "p1", user: String? = "u1", unit: String = "B") -> Sample {
            Sample(source: "openstack", name: name, type: .gauge, unit: unit, volume: volume, userID: user,
                   projectID: project, resourceID: resource, timestamp: "2026-11-27T10:00:00.000000",
                   resourceMetadata: metadata, messageID: "m", monotonicTime: 1)
        }
        let metadata: JSONValue = .object([
            ("display_name", .string("web \"01\"\\ \n second line")), ("name", .string("instance-1")),
            ("host", .string("abc")), ("flavor", .object([("id", .string("7")), ("name", .string("m1.tiny"))])),
            ("user_metadata", .object([("server_group", .string("sg-1"))])),
        ])
        var samples = volumes.enumerated().map { index, volume in
            sample("disk.device.read.bytes", volume, resource: "r-\(index)", metadata: metadata)
        }
        samples.append(sample("cpu_util", .double(12.5), resource: "r-x", metadata: metadata, unit: "%"))
        samples.append(sample("vcpus", .int(2), resource: "r-x", metadata: .object([("name", .string("only"))]),
                              unit: "vcpu"))
        // The same label set again: the last value stays.
        samples.append(sample("disk.device.read.bytes", .int(42), resource: "r-0", metadata: metadata))
        samples.append(sample("memory", .int(512), resource: "r-y", metadata: .object([
            ("display_name", .string("")), ("name", .string("n")), ("flavor", .object([("name", .string("f"))])),
            ("user_metadata", .object([("server_group", .string(""))])),
        ]), unit: "MB"))
        let ours = String(decoding: CeilometerFormat.render(samples.map(CeilometerFormat.Series.init)), as: UTF8.self)
        #expect(ours == (try ceilometer(samples)))
        #expect(ours.contains("} 1.234567e+06\n") && ours.contains(#"resource_name="web \"01\"\\ \n second line:"#))
    }
}

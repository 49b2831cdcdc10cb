import Testing
import VirtMeterTestSupport
@testable import VirtMeterCore

/// A snapshot holding the given declared-field values (`field`, index, value, device).
private func withFields(_ fields: [(String, Int, Volume, String?)], at time: Double,
                        interfaces: [InterfaceStats] = []) -> DomainSnapshot {
    var domain = snapshot(at: time)
    domain.interfaces = interfaces
    domain.statsFields = fields.map { StatsField(pattern: FieldPattern($0.0)!, index: $0.1, value: $0.2, device: $0.3) }
    return domain
}

private func meter(_ field: String, type: SampleType = .gauge, aggregate: MeterDeclaration.Aggregate? = nil,
                   scale: Double = 1, rate: Bool = false) -> DeclaredMeter {
    DeclaredMeter(MeterDeclaration(name: "test.declared", type: type, unit: "x", summary: "s",
                                   field: FieldPattern(field)!, aggregate: aggregate, scale: scale, rate: rate,
                                   source: "test.yaml:1"))
}

@Suite("declared meters over bulk-stats fields")
struct DeclaredMeterTests {
    @Test("field patterns: N matches one index, nothing else; at most one N")
    func patterns() throws {
        let pattern = try #require(FieldPattern("block.N.fl.reqs"))
        #expect(pattern.index(in: "block.12.fl.reqs") == 12)
        #expect(pattern.index(in: "block.x.fl.reqs") == nil)
        #expect(pattern.index(in: "block.1.fl.times") == nil)
        #expect(pattern.index(in: "block..fl.reqs") == nil)
        #expect(FieldPattern("balloon.major_fault")?.index(in: "balloon.major_fault") == -1)
        #expect(FieldPattern("vcpu.N.N") == nil)
        #expect(FieldPattern("a..b") == nil)
        let request = StatsFieldRequest([pattern, FieldPattern("balloon.major_fault")!])
        #expect(request.groups == ["block", "balloon"])
        #expect(request.match("block.3.fl.reqs", group: "block")?.1 == 3)
        #expect(request.match("balloon.major_fault", group: "balloon")?.1 == -1)
        #expect(request.match("balloon.minor_fault", group: "balloon") == nil)
    }

    @Test("a plain field is one sample of the domain, integers stay integers, scale makes a float")
    func plain() throws {
        let now = withFields([("balloon.major_fault", -1, .int(42), nil)], at: 10)
        #expect(meter("balloon.major_fault").readings(now, previous: nil).map(\.volume) == [.int(42)])
        #expect(meter("balloon.major_fault").readings(now, previous: nil).first?.resourceID == nil)
        #expect(meter("balloon.major_fault", scale: 1.0 / 1024).readings(now, previous: nil).map(\.volume)
                == [.double(42.0 / 1024)])
    }

    @Test("aggregate sum and mean over N; a rate per second over the measured Δt, none first or after a reset")
    func aggregateRate() throws {
        let before = withFields([("vcpu.N.delay", 0, .int(1_000_000_000), nil),
                                 ("vcpu.N.delay", 1, .int(2_000_000_000), nil)], at: 100)
        let now = withFields([("vcpu.N.delay", 0, .int(1_500_000_000), nil),
                              ("vcpu.N.delay", 1, .int(2_500_000_000), nil)], at: 102)
        #expect(meter("vcpu.N.delay", aggregate: .sum).readings(now, previous: nil).map(\.volume)
                == [.int(4_000_000_000)])
        #expect(meter("vcpu.N.delay", aggregate: .mean).readings(now, previous: nil).map(\.volume)
                == [.double(2_000_000_000)])
        // 1 s of delay over 2 s, summed: 50 %; per vCPU (mean): 25 %.
        let percent = 100 / 1e9
        #expect(meter("vcpu.N.delay", aggregate: .sum, scale: percent, rate: true).readings(now, previous: before)
                .map(\.volume) == [.double(50)])
        #expect(meter("vcpu.N.delay", aggregate: .mean, scale: percent, rate: true).readings(now, previous: before)
                .map(\.volume) == [.double(25)])
        // A percentage rate is clamped as cpu_util: 100 per vCPU it sums (timing skew: 5 s of delay read in 2 s).
        let skewed = withFields([("vcpu.N.delay", 0, .int(3_500_000_000), nil),
                                 ("vcpu.N.delay", 1, .int(4_500_000_000), nil)], at: 102)
        func percentMeter(_ aggregate: MeterDeclaration.Aggregate) -> DeclaredMeter {
            DeclaredMeter(MeterDeclaration(name: "p", type: .gauge, unit: "%", summary: "s",
                                           field: FieldPattern("vcpu.N.delay")!, aggregate: aggregate, scale: percent,
                                           rate: true, source: "t:1"))
        }
        #expect(percentMeter(.sum).readings(skewed, previous: before).map(\.volume) == [.double(200)])
        #expect(percentMeter(.mean).readings(skewed, previous: before).map(\.volume) == [.double(100)])
        #expect(percentMeter(.sum).readings(now, previous: before).map(\.volume) == [.double(50)])
        #expect(meter("vcpu.N.delay", aggregate: .sum, rate: true).readings(now, previous: nil).isEmpty)
        #expect(meter("vcpu.N.delay", aggregate: .sum, rate: true).readings(before, previous: now).isEmpty)
        #expect(meter("vcpu.N.delay", aggregate: .sum, rate: true).readings(now, previous: now).isEmpty)
    }

    @Test("a delta is the change since the previous poll, none first or after a reset")
    func delta() throws {
        let before = withFields([("balloon.major_fault", -1, .int(40), nil)], at: 1)
        let now = withFields([("balloon.major_fault", -1, .int(45), nil)], at: 2)
        #expect(meter("balloon.major_fault", type: .delta).readings(now, previous: before).map(\.volume) == [.int(5)])
        #expect(meter("balloon.major_fault", type: .delta).readings(now, previous: nil).isEmpty)
        #expect(meter("balloon.major_fault", type: .delta).readings(before, previous: now).isEmpty)
    }

    @Test("per device: the built-in device meters' resource ids and metadata")
    func perDevice() throws {
        let disks = withFields([("block.N.fl.reqs", 0, .int(7), "vda"), ("block.N.fl.reqs", 1, .int(9), "vdb")],
                               at: 1)
        let readings = meter("block.N.fl.reqs", type: .cumulative).readings(disks, previous: nil)
        #expect(readings.map(\.resourceID) == ["\(disks.uuid)-vda", "\(disks.uuid)-vdb"])
        #expect(readings.map(\.volume) == [.int(7), .int(9)])
        #expect(readings[0].metadata.map(\.0) == ["disk_name"] && readings[0].metadata[0].1 == .string("vda"))
        let nic = withFields([("net.N.rx.drop", 0, .int(3), "tap1")], at: 1,
                             interfaces: [InterfaceStats(name: "tap1", mac: "fa:16:3e:00:00:01")])
        let net = meter("net.N.rx.drop", type: .cumulative).readings(nic, previous: nil)
        #expect(net.map(\.resourceID) == ["\(nic.name)-\(nic.uuid)-tap1"])
        #expect(net[0].metadata.map(\.0) == ["name", "mac", "fref", "vnic_name"])
        #expect(net[0].metadata[1].1 == .string("fa:16:3e:00:00:01"))
    }

    @Test("a domain without the field: no sample, and a reason naming the field and the declaration")
    func missing() throws {
        let empty = withFields([], at: 1)
        #expect(meter("balloon.major_fault").readings(empty, previous: nil).isEmpty)
        #expect(meter("balloon.major_fault").unavailableReason(empty)
                == "libvirt returned no balloon.major_fault for this domain (declared in test.yaml:1)")
        #expect(meter("balloon.major_fault")
                    .unavailableReason(withFields([("balloon.major_fault", -1, .int(1), nil)], at: 1)) == nil)
    }

    @Test("declared samples go through the Poller and are signed like built-in ones")
    func throughPoller() async throws {
        let polls = [[withFields([("balloon.major_fault", -1, .int(42), nil)], at: 1)]]
        let cycles = try await runDicts([meter("balloon.major_fault", type: .cumulative)], polls, secret: "s3cret")
        let dict = try #require(cycles.first?.first)
        let sample = try #require(Sample(json: dict))
        #expect(sample.name == "test.declared" && sample.volume == .int(42) && sample.type == .cumulative)
        #expect(!sample.signature.isEmpty && SampleSigner(secret: "s3cret").verify(dict))
    }
}

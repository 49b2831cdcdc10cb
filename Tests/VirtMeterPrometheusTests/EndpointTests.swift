import Foundation
import Testing
import VirtMeterTestSupport
import VirtMeterCore

/// `virtmeter run --prometheus-listen` as a process, scraped by a real Prometheus server and by curl.
@Suite("virtmeter run's Prometheus endpoint", .serialized)
struct EndpointTests {
    static let web01 = "a6b2c4d8-1234-4e5f-9abc-def012345678"
    static let db01 = "0c7f3a52-5d2e-4f0b-8f7e-2b9a61d4c0e1"

    /// ceilometer_memory_usage is the published memory.usage, virtmeter_cycles_total rises; HTTPS with the test CA.
    @Test("a real Prometheus scrapes it over HTTP and HTTPS: the published memory.usage, cycles rising")
    func scrapedByPrometheus() async throws {
        let tls = try TestEnvironment.required("VIRTMETER_TEST_TLS_DIR")
        let uri = "test://" + TestEnvironment.testNode
        let plainPort = freePort(), tlsPort = freePort()
        let plain = try agentProcess("plain", uri: uri, interval: 1, meters: ["memory.usage", "cpu", "vcpus"],
                                     arguments: ["--prometheus-listen", "127.0.0.1:\(plainPort)"])
        let secure = try agentProcess("tls", uri: uri, interval: 1, meters: ["memory.usage"], config: """
            prometheus:
              listen: ["127.0.0.1:\(tlsPort)"]
              cert_file: \(tls)/server.pem
              key_file: \(tls)/server.key

            """)
        let prometheus = try PrometheusServer(jobs: [("plain", "127.0.0.1:\(plainPort)", nil),
                                                     ("tls", "127.0.0.1:\(tlsPort)", "\(tls)/ca.pem")])
        var plainValue: String?, tlsValue: String?
        let scraped = try await eventually(within: 40) {
            plainValue = try prometheus.query("ceilometer_memory_usage{job=\"plain\",resource=\"\(Self.web01)\"}")
                .first?.value
            tlsValue = try prometheus.query("ceilometer_memory_usage{job=\"tls\",resource=\"\(Self.web01)\"}")
                .first?.value
            return plainValue != nil && tlsValue != nil
        }
        let logs = "prometheus: \(prometheus.log.suffix(2000))\nplain: \(plain.stderr.suffix(1500))\n"
            + "tls: \(secure.stderr.suffix(1500))"
        #expect(scraped, "\(logs)")
        // What virtmeter published: the test driver's balloon figures are the same every cycle.
        let published = plain.samples().filter {
            $0["counter_name"]?.stringValue == "memory.usage" && $0["resource_id"]?.stringValue == Self.web01
        }.compactMap { $0["counter_volume"]?.doubleValue }
        #expect(!published.isEmpty && Set(published).count == 1, "published memory.usage: \(published)")
        #expect(plainValue.flatMap(Double.init) == published.last)
        #expect(tlsValue.flatMap(Double.init) == published.last)
        let labels = try prometheus.query("ceilometer_memory_usage{job=\"plain\",resource=\"\(Self.web01)\"}")
            .first?.labels
        #expect(labels?["resource_name"]?.stringValue == "web-01:instance-0000002a")
        #expect(labels?["flavor_name"]?.stringValue == "m1.small" && labels?["counter"] == .string("memory.usage"))

        let first = try prometheus.query("virtmeter_cycles_total{job=\"plain\"}").first.flatMap { Double($0.value) }
        try await Task.sleep(for: .seconds(3))
        let second = try prometheus.query("virtmeter_cycles_total{job=\"plain\"}").first.flatMap { Double($0.value) }
        let cycles = "virtmeter_cycles_total \(String(describing: first)) then \(String(describing: second))"
        #expect(first != nil && second != nil && second! > first!, "\(cycles)")
        #expect(try prometheus.query("up{job=\"tls\"}").first?.value == "1")
        #expect(try prometheus.query("virtmeter_libvirt_up{job=\"tls\"}").first?.value == "1")

        // HTTPS only, verified: with the test CA it answers, with another CA or over plain HTTP it does not.
        #expect(try get("https://localhost:\(tlsPort)/metrics", caFile: "\(tls)/ca.pem").status == 200)
        #expect(try get("https://localhost:\(tlsPort)/metrics", caFile: "\(tls)/wrong-ca.pem").status == 0)
        #expect(try get("http://127.0.0.1:\(tlsPort)/metrics", timeout: 3).status != 200)
        let scrape = try get("http://127.0.0.1:\(plainPort)/metrics")
        for name in ["virtmeter_cycle_duration_seconds_bucket", "virtmeter_domains", "virtmeter_samples_produced_total",
                     "virtmeter_samples_published_total", "virtmeter_spool_bytes", "virtmeter_spool_records",
                     "virtmeter_samples_dropped_total", "virtmeter_samples_lost_total", "virtmeter_broker_up",
                     "virtmeter_publish_latency_seconds_bucket", "virtmeter_domains_not_answering",
                     "virtmeter_build_info"] {
            #expect(scrape.body.contains("\n" + name), "\(name) missing")
        }
        #expect(value(in: scrape.body, metric: "virtmeter_domains").flatMap(Double.init) == 4)
        #expect(try get("http://127.0.0.1:\(plainPort)/nothing").status == 404)
        #expect(plain.stop() == 0 && secure.stop() == 0)
    }

    /// A destroyed domain leaves the next exposition; libvirtd stopped: scrapes answer at once with the last data and
    /// virtmeter_libvirt_up 0, /healthz 503 past the limit and 200 once it is back; READY=1 and WATCHDOG=1 arrive.
    @Test("domain gone; libvirtd stopped and back: fast scrapes, libvirt_up, /healthz 503 then 200; sd_notify")
    func libvirtdStoppedAndBack() async throws {
        let libvirtd = try OwnLibvirtd()
        defer { libvirtd.stop() }
        let domains = try testNodeDomains()
        for name in ["instance-0000002a", "instance-0000002b"] {
            let file = libvirtd.directory.appendingPathComponent("\(name).xml")
            try #require(domains[name] != nil, "\(name) is not in the test node")
            try domains[name]!.write(to: file, atomically: true, encoding: .utf8)
            let created = try libvirtd.virsh(["create", file.path])
            try #require(created.status == 0, "virsh create \(name): \(created.output)")
        }
        let notify = try NotifySocket(directory: libvirtd.directory)
        defer { notify.close() }
        let port = freePort()
        let agent = try agentProcess("own", uri: libvirtd.uri, interval: 1, meters: ["memory.usage", "vcpus"],
                                     config: "prometheus:\n  listen: ['127.0.0.1:\(port)']\n  healthz_intervals: 3\n",
                                     environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
        defer { _ = agent.stop() }
        let metrics = "http://127.0.0.1:\(port)/metrics", healthz = "http://127.0.0.1:\(port)/healthz"
        var body = ""
        let both = try await eventually(within: 20) {
            body = (try? get(metrics).body) ?? ""
            return body.contains(Self.web01) && body.contains(Self.db01)
        }
        try #require(both, "both domains in the exposition: \(agent.stderr.suffix(2000))")
        #expect(try get(healthz).body == "ok\n")
        #expect(try await eventually(within: 5) { notify.messages.filter { $0 == "WATCHDOG=1" }.count >= 2 },
                "WATCHDOG=1 about every half second: \(notify.messages.suffix(5))")
        #expect(notify.messages.filter { $0 == "READY=1" }.count == 1, "READY=1 once: \(notify.messages.prefix(5))")

        // A domain destroyed: gone from the next exposition, the other stays.
        #expect(try libvirtd.virsh(["destroy", "instance-0000002b"]).status == 0)
        let gone = try await eventually(within: 10) {
            body = try get(metrics).body
            return !body.contains(Self.db01) && body.contains(Self.web01)
        }
        #expect(gone, "db-01 still in the exposition")

        // libvirtd stopped: every scrape answers at once; the last data stays; libvirt_up turns 0.
        libvirtd.pause()
        defer { libvirtd.resume() }
        let stoppedAt = SampleClock.monotonic()
        #expect(try get(healthz).status == 200, "healthy until the limit (3 intervals of 1 s) has passed")
        var slowest = 0.0, scrapes = 0
        let down = try await eventually(within: 20) {
            let answer = try get(metrics, timeout: 5)
            scrapes += 1
            slowest = max(slowest, answer.seconds)
            body = answer.body
            return value(in: body, metric: "virtmeter_libvirt_up").flatMap(Double.init) == 0
        }
        #expect(down, "virtmeter_libvirt_up never 0: \(agent.stderr.suffix(2000))")
        #expect(slowest < 0.5, "slowest of \(scrapes) scrapes while libvirtd hangs: \(slowest) s")
        print("FIGURE scrape while libvirtd is stopped: expected at once, measured slowest of \(scrapes) "
              + String(format: "%.1f ms", slowest * 1000))
        #expect(value(in: body, metric: "ceilometer_memory_usage", containing: [Self.web01]) != nil,
                "the last data stays")
        let unhealthy = try await eventually(within: 20) { try get(healthz).status == 503 }
        let unhealthyAfter = SampleClock.monotonic() - stoppedAt
        #expect(unhealthy, "healthz never 503")
        let reason = try get(healthz)
        #expect(reason.body.contains("libvirt unreachable for") || reason.body.contains("no poll cycle completed"),
                "503 reason: \(reason.body)")
        // The limit runs from the last cycle completed, at most an interval before libvirtd stopped.
        #expect(unhealthyAfter >= 3 - 1 - 0.1 && unhealthyAfter < 3 + 2, "503 after \(unhealthyAfter) s")
        print("FIGURE /healthz 503 after libvirtd stopped: expected within the limit of 3 s from the last cycle, "
              + String(format: "measured %.1f s after the stop", unhealthyAfter))
        #expect(try get(healthz).seconds < 0.5)

        libvirtd.resume()
        let healthy = try await eventually(within: 30) { try get(healthz).status == 200 }
        #expect(healthy, "healthz 200 again: \(agent.stderr.suffix(2000))")
        #expect(value(in: try get(metrics).body, metric: "virtmeter_libvirt_up").flatMap(Double.init) == 1)
        #expect(agent.stop() == 0)
        #expect(notify.messages.filter { $0 == "READY=1" }.count == 1)
    }
}

import CLibvirt
import Dispatch
import Foundation
import Logging
import Synchronization
import VirtMeterCore

/// How the last poll read libvirt: a test (or an operator) can see whether the bulk path served every domain.
package struct InspectionCounters: Sendable, Equatable {
    /// Running domains the last poll knew of (in the bulk answer, or listed when it read them one by one).
    package var domains = 0
    /// Domains for which at least one group had to be read with per-domain calls.
    package var fallbackDomains = 0
    /// Per-domain libvirt calls made in the last poll (stats read one by one, fallbacks, XML reads, perf, and the
    /// info and disk sizes of sampled shut-off domains).
    package var perDomainCalls = 0
    /// Domains skipped because they vanished or could not be read.
    package var skippedDomains = 0
    /// Domains left out because they did not answer: a call past its deadline, a call still stuck from an earlier
    /// poll, or busy (libvirt could not take the domain's job without waiting).
    package var notAnswering = 0
    /// Whether the stats came from one bulk call (false: it missed its deadline, or an earlier one is still stuck,
    /// and the domains were read one by one).
    package var readInBulk = true
    /// Connections the workers opened to read domains on one of their own (while the bulk call is stuck; at most one
    /// per worker; 0 while it serves).
    package var ownConnections = 0
}

/// The libvirt inspector: reads every running domain with one `virConnectGetAllDomainStats` call per cycle
/// (NOWAIT, explicit groups) and falls back to per-domain calls for the groups a driver never returns (libvirt's
/// test driver returns state only; decided per connection).
///
/// No libvirt call can stall a cycle: each runs on a worker thread with a deadline (`callTimeout`), and one that
/// misses it is abandoned (it holds only its own thread and, until it returns, its domain). When the bulk call
/// misses its deadline, or an earlier one is still stuck, the domains are listed on a connection without stuck
/// calls and read one by one in parallel, each worker on a connection of its own, so that only the stuck one is left
/// out. A domain that stops answering is logged once, and once when it is back.
/// Shut-off domains are listed each poll and read on the same workers, with the same deadlines (their XML, cached;
/// their info and disk sizes when `options` sample them).
/// Polls run one at a time on a serial queue, never on Swift's cooperative pool; the state they share with the
/// workers is behind locks, the rest is touched only on that queue, which is why the class is `@unchecked Sendable`.
package final class LibvirtHypervisor: Hypervisor, @unchecked Sendable {
    private struct CachedXML {
        var domainID: Int32
        var xml: ParsedXML
        var readAt: Double
    }

    /// A domain's parsed XML, shared by the cache, the work items and their readings rather than copied (a copy of
    /// `DomainXML` retains each of its many strings and arrays).
    private final class ParsedXML: Sendable {
        let xml: DomainXML

        init(_ xml: DomainXML) {
            self.xml = xml
        }
    }

    /// What a worker reads for one domain beyond the bulk answer.
    private struct DomainWork: Sendable {
        /// On the poll's connection; looked up again on a worker's own one (`ownConnectionReader`).
        var domain: LibvirtDomain
        /// The domain's bulk record; nil: read its stats first.
        let record: StatsRecord?
        /// The cached XML; nil: read it.
        let xml: ParsedXML?
        /// Whether the connection's driver returns the groups in stats records (nil: not known yet, the record
        /// decides); where it does not, per-domain calls fill them in.
        let servesGroups: Bool?
        /// Whether a record without `balloon.rss` is from a busy domain.
        let rssMeansAnswered: Bool
        /// The fields declared meters read.
        let wanted: StatsFieldRequest
        /// A shut-off domain (no record): read for its XML, and its info and disk sizes when `sampleShutOff`.
        var shutOff = false
        var sampleShutOff = false
    }

    private enum Reading: Sendable {
        /// `record` is the stats record read here, if any: the connection learns from it what its driver serves.
        case read(DomainSnapshot, xml: ParsedXML?, malformedXML: String?, calls: Int, fellBack: Bool,
                  record: BulkStats?)
        case busy(calls: Int)
        case failed(LibvirtError, calls: Int)
    }

    package let uri: String
    private let readOnly: Bool
    /// The open connection; nil once it died, until the next poll opens a new one.
    private var connection: LibvirtConnection?
    let queue = DispatchQueue(label: "virtmeter.libvirt")
    private let logger: Logger
    private let xmlMaxAge: Double
    private let callTimeout: Double
    private var xmlCache: [String: CachedXML] = [:]
    private let counters = Mutex(InspectionCounters())
    /// Keys of the calls in flight ("open", "bulk", "list", "list-shut-off", or a domain's uuid): set by the worker
    /// while it runs the call, so at the start of a poll they are the calls still stuck from earlier polls.
    private let inFlight = Mutex<Set<String>>([])
    /// A connection whose open returned after its deadline, for the next poll to use.
    private let lateConnection = Mutex<LibvirtConnection?>(nil)
    private let events = DomainEventSink()
    /// The bulk-stats fields the polled declared meters read (`request(_:)`).
    private let wanted = Mutex(StatsFieldRequest.none)
    /// A domain not answering: since when (monotonic seconds), for how many polls in a row, whether it was logged.
    private struct Silence {
        var name: String
        var since: Double
        var polls = 0
        var logged = false
    }

    /// Domains not answering, by uuid.
    private var silent: [String: Silence] = [:]
    /// Silent polls in a row before a domain is logged as not answering.
    static let silentPollsBeforeWarning = 2
    /// Since when the bulk call has been stuck (the domains are read one by one meanwhile).
    private var bulkStuckSince: Double?
    /// Which domains are read and what is filled in: shut-off domains, owner names, domains without nova metadata.
    package let options: InspectionOptions
    /// Test seam: called on the worker before each call with the call's key ("open", "bulk", "list",
    /// "list-shut-off" or a uuid).
    let beforeCall: (@Sendable (String) -> Void)?

    /// Worker threads per poll for the per-domain calls (libvirtd serves 5 requests of one client at a time).
    static let workers = 3
    /// Calls stuck on one connection before virtmeter opens another one (the old one closes when they return). One:
    /// measured on libvirt 9.0 with a guest's qemu stopped, while a call hung on a connection the other calls on it
    /// were now and then held up about 5 s each (a reply waits for the thread stuck in the connection's I/O loop);
    /// on a connection of their own they never were.
    static let maxStuckCalls = 1

    /// A hypervisor for `uri` (read-only unless `readOnly` is false). `xmlMaxAge` bounds how long a domain's parsed
    /// XML (nova metadata, devices) is reused; lifecycle events and a restart (new ID) make it read again at once.
    /// `callTimeout` is each libvirt call's deadline in seconds (see `callTimeout(interval:)`). With `connectNow`
    /// the connection opens here and a failure throws `LibvirtError` (fail fast: `poll`, `check`); without, it
    /// opens at the first poll and each poll tries again until it does (`run` starting before libvirtd). `options`
    /// say which domains are read and what is filled in.
    package init(uri: String = "qemu:///system", readOnly: Bool = true, xmlMaxAge: Double = 600,
                callTimeout: Double = 5, connectNow: Bool = true, options: InspectionOptions = InspectionOptions(),
                logger: Logger = Logger(label: "virtmeter.libvirt")) throws(LibvirtError) {
        self.uri = uri
        self.readOnly = readOnly
        self.options = options
        self.logger = logger
        self.xmlMaxAge = xmlMaxAge
        self.callTimeout = callTimeout
        beforeCall = nil
        if connectNow {
            connection = try queue.sync { Result { () throws(LibvirtError) in try openConnection() } }.get()
        }
    }

    /// For tests: like the public init (never connecting at init), with `beforeCall` run before each call.
    init(uri: String, callTimeout: Double, logger: Logger, beforeCall: @escaping @Sendable (String) -> Void) {
        self.uri = uri
        readOnly = true
        options = InspectionOptions()
        self.logger = logger
        xmlMaxAge = 600
        self.callTimeout = callTimeout
        self.beforeCall = beforeCall
    }

    /// The deadline of each libvirt call for polls every `interval` seconds: 40% of it, between 0.5 and 5 s, so that
    /// a cycle that lost its bulk call still ends within its interval, and a busy host is not taken for a hung one.
    package static func callTimeout(interval: Double) -> Double { min(5, max(0.5, interval * 0.4)) }

    /// Whether the connection is read-only (the default: monitoring needs no write access).
    package var isReadOnly: Bool { readOnly }

    /// Keeps the fields declared meters read in the snapshots (`statsFields`) from the next poll on, adding their
    /// stats groups to the bulk call; `.none` when no declared meter is polled.
    package func request(_ fields: StatsFieldRequest) { wanted.withLock { $0 = fields } }

    /// Counters of the last poll.
    package var lastCounters: InspectionCounters { counters.withLock { $0 } }

    /// Domain events received so far (lifecycle and reboot: each drops the domain's cached XML).
    package var domainEventsReceived: Int { events.received.load(ordering: .relaxed) }

    package func poll() async throws -> [DomainSnapshot] {
        try await queue.run { () throws(LibvirtError) in try self.readAll() }
    }

    // MARK: Calls with deadlines

    /// Runs `call` on a worker with the deadline; nil when it missed it (or an earlier call with the same key is
    /// still stuck: it is not made again).
    private func withDeadline<T: Sendable>(_ key: String, connection: LibvirtConnection?,
                                           _ call: @escaping @Sendable () -> T) -> T? {
        guard inFlight.withLock({ !$0.contains(key) }) else { return nil }
        return runTracked([key], connection: connection) { _ in call() }.first ?? nil
    }

    /// Runs `work` for each key on the workers with one deadline; marks each key in flight while its call runs.
    private func runTracked<T: Sendable>(_ keys: [String], connection: LibvirtConnection?,
                                         _ work: @escaping @Sendable (Int) -> T) -> [T?] {
        runTracked(keys, connection: connection, eachWorker: { work })
    }

    /// Like `runTracked(_:connection:_:)`, with a work function of each worker's own (made on its thread).
    /// `connection` is the one the calls are made on, if it is shared: its stuck calls are counted.
    private func runTracked<T: Sendable>(_ keys: [String], connection: LibvirtConnection?,
                                         eachWorker: @escaping @Sendable () -> (Int) -> T) -> [T?] {
        // The workers hold `self` (its locked state only) and the connection until their call returns.
        DeadlineBatch.run(Array(keys.indices), workers: Self.workers, seconds: callTimeout, eachWorker: {
            let work = eachWorker()
            return { index in
                self.inFlight.withLock { _ = $0.insert(keys[index]) }
                connection?.stuckCalls.withLock { $0 += 1 }
                defer {
                    connection?.stuckCalls.withLock { $0 -= 1 }
                    self.inFlight.withLock { _ = $0.remove(keys[index]) }
                }
                self.beforeCall?(keys[index])
                return work(index)
            }
        }).outputs
    }

    // MARK: The connection

    /// Opens a connection (on `queue` at init, else on a worker).
    private func openConnection() throws(LibvirtError) -> LibvirtConnection {
        try LibvirtConnection(uri: uri, readOnly: readOnly, events: events)
    }

    /// The connection to use: the open one while it is alive and not clogged with stuck calls, else a new one
    /// (libvirtd restarted, the socket closed), opened with a deadline. Runs on `queue`.
    func liveConnection() throws(LibvirtError) -> LibvirtConnection {
        // What a connection to the same daemon learnt about its driver carries over to the one that replaces it.
        var learnt: (servesGroups: Bool?, servesRSS: Bool)?
        if let connection, connection.isAlive {
            let stuck = connection.stuckCalls.withLock { $0 }
            if stuck < Self.maxStuckCalls { return connection }
            logger.debug("libvirt calls stuck on the connection: opening another one",
                         metadata: ["virtmeter.libvirt.stuck_calls": "\(stuck)"])
            learnt = (connection.servesGroups, connection.servesRSS)
        }
        if connection != nil {
            // A connection that died may have missed lifecycle events, so the XML cached goes with it; one replaced
            // for its stuck calls delivers them until it closes.
            if learnt == nil { xmlCache = [:] }
            connection = nil
        }
        if let late = lateConnection.withLock({ let late = $0; $0 = nil; return late }), late.isAlive {
            connection = late
            if let learnt { (late.servesGroups, late.servesRSS) = learnt }
            return late
        }
        let opened = withDeadline("open", connection: nil) { () -> Result<Void, LibvirtError> in
            Result { () throws(LibvirtError) in
                let opened = try self.openConnection()
                self.lateConnection.withLock { $0 = opened }
            }
        }
        let operation = readOnly ? "virConnectOpenReadOnly(\(uri))" : "virConnectOpen(\(uri))"
        guard let opened else { throw LibvirtError.timedOut(operation, seconds: callTimeout) }
        try opened.get()
        guard let new = lateConnection.withLock({ let new = $0; $0 = nil; return new }) else {
            throw LibvirtError.timedOut(operation, seconds: callTimeout)
        }
        connection = new
        if let learnt { (new.servesGroups, new.servesRSS) = learnt }
        logger.debug("libvirt connection opened", metadata: ["virtmeter.libvirt.uri": "\(uri)"])
        return new
    }

    // MARK: One poll

    /// Reads every running domain; runs on `queue`.
    private func readAll() throws(LibvirtError) -> [DomainSnapshot] {
        let started = SampleClock.monotonic()
        var current = try liveConnection()
        for uuid in events.take() { xmlCache[uuid] = nil }
        var counters = InspectionCounters()
        let stuck = inFlight.withLock { $0 }

        // 1. Stats in bulk; or, when the bulk call misses its deadline or an earlier one is still stuck, the running
        //    domains listed, their stats read one by one in step 2.
        var records: [String: StatsRecord] = [:]
        let domains: [LibvirtDomain]
        if let bulk = try bulkStats(current, stuck: stuck) {
            domains = bulk.map(\.domain)
            records.reserveCapacity(bulk.count)
            for record in bulk { records[record.domain.uuid] = record }
        } else {
            counters.readInBulk = false
            // A bulk call that just missed its deadline clogs its connection: the listings go on another one.
            current = try liveConnection()
            guard let listed = withDeadline("list", connection: current, { [current] in
                DomainCalls.runningDomains(current)
            }) else { throw LibvirtError.timedOut("virConnectListAllDomains(\(uri))", seconds: callTimeout) }
            domains = try listed.get()
        }
        let connection = current
        counters.domains = domains.count
        learn(from: records.values.map(\.stats), connection)
        let shutOff = shutOffDomains(connection, running: domains)

        // 2. Per domain, on the workers with one deadline: the stats not read in bulk, the XML not cached, the
        //    groups a driver never returns, the perf group of a domain with perf events; the shut-off domains' XML
        //    not cached, and their info and disk sizes when they are sampled. A domain still stuck from an earlier
        //    poll gets no new call; a busy one (NOWAIT left out the groups that need its job) gets none either: they
        //    would wait for the same job. While the bulk call is stuck, each worker reads on a connection of its own.
        let readAt = SampleClock.monotonic()
        let rssMeansAnswered = connection.servesGroups == true && connection.servesRSS
        let fields = wanted.withLock { $0 }
        var silentNow: [(LibvirtDomain, String)] = []
        var snapshots: [DomainSnapshot] = []
        var work: [DomainWork] = []
        snapshots.reserveCapacity(domains.count + shutOff.count)
        work.reserveCapacity(domains.count + shutOff.count)
        for domain in domains {
            if stuck.contains(domain.uuid) {
                silentNow.append((domain, "a call from an earlier poll has not returned"))
                continue
            }
            let record = records[domain.uuid]
            if let record, rssMeansAnswered, Self.isBusy(record) {
                silentNow.append((domain, "busy: libvirt could not take its job without waiting"))
                continue
            }
            let item = DomainWork(domain: domain, record: record, xml: cachedXML(domain, now: readAt),
                                  servesGroups: connection.servesGroups, rssMeansAnswered: rssMeansAnswered,
                                  wanted: fields)
            if let record, let xml = item.xml, connection.servesGroups == true, !xml.xml.perfEnabled {
                snapshots.append(Self.snapshot(domain, record.stats, xml.xml, readAt: record.readAt))
            } else {
                work.append(item)
            }
        }
        for domain in shutOff {
            if stuck.contains(domain.uuid) {
                silentNow.append((domain, "a call from an earlier poll has not returned"))
                continue
            }
            let xml = cachedXML(domain, now: readAt)
            if let xml, !options.sampleShutOffDomains {
                snapshots.append(Self.shutOffSnapshot(domain, xml.xml, readAt: readAt))
            } else {
                work.append(DomainWork(domain: domain, record: nil, xml: xml, servesGroups: nil,
                                       rssMeansAnswered: false, wanted: fields, shutOff: true,
                                       sampleShutOff: options.sampleShutOffDomains))
            }
        }
        let items = work
        let keys = items.map(\.domain.uuid)
        let readings: [Reading?]
        if counters.readInBulk {
            readings = runTracked(keys, connection: connection) { index in
                Self.read(items[index], connection: connection)
            }
        } else {
            let opened = OpenCount()
            readings = runTracked(keys, connection: nil, eachWorker: { [uri, readOnly] in
                Self.ownConnectionReader(uri: uri, readOnly: readOnly, items: items, opened: opened)
            })
            counters.ownConnections = opened.value.withLock { $0 }
        }
        for (item, reading) in zip(work, readings) {
            switch reading {
            case nil:
                silentNow.append((item.domain, "no answer within \(callTimeout) s"))
            case .busy(let calls)?:
                counters.perDomainCalls += calls
                silentNow.append((item.domain, "busy: libvirt could not take its job without waiting"))
            case .failed(let error, let calls)?:
                counters.perDomainCalls += calls
                counters.skippedDomains += 1
                let level: Logger.Level = error.isNoDomain ? .debug : .warning
                logger.log(level: level, "domain skipped this cycle",
                           metadata: [
                               "virtmeter.domain.name": "\(item.domain.name)", "virtmeter.libvirt.error": "\(error)",
                           ])
            case .read(let snapshot, let xml, let malformed, let calls, let fellBack, let record)?:
                counters.perDomainCalls += calls
                if let record { learn(from: [record], connection) }
                if fellBack { counters.fallbackDomains += 1 }
                if let xml {
                    xmlCache[item.domain.uuid] = CachedXML(domainID: item.domain.id, xml: xml, readAt: readAt)
                }
                if let malformed {
                    logger.warning("domain XML unreadable, reading it without nova metadata",
                                   metadata: [
                                       "virtmeter.domain.uuid": "\(item.domain.uuid)",
                                       "virtmeter.libvirt.error": "\(malformed)",
                                   ])
                }
                snapshots.append(snapshot)
            }
        }
        counters.notAnswering = silentNow.count
        track(silentNow, answered: snapshots, listed: domains + shutOff, started: started)
        // Only domains listed this poll stay in the cache.
        if xmlCache.count > domains.count + shutOff.count {
            let listed = Set((domains + shutOff).map(\.uuid))
            xmlCache = xmlCache.filter { listed.contains($0.key) }
        }
        self.counters.withLock { $0 = counters }
        return snapshots.compactMap(applyOptions)
    }

    /// The shut-off domains not among `running` (a domain may start between the two calls); none this poll when the
    /// listing fails or misses its deadline (a debug line: the running domains are what matters).
    private func shutOffDomains(_ connection: LibvirtConnection, running: [LibvirtDomain]) -> [LibvirtDomain] {
        let listed = withDeadline("list-shut-off", connection: connection) { DomainCalls.shutOffDomains(connection) }
        switch listed {
        case .success(let domains)?:
            let runningUUIDs = Set(running.map(\.uuid))
            return domains.filter { !runningUUIDs.contains($0.uuid) }
        case .failure(let error)?:
            logger.debug("shut-off domains not listed this cycle", metadata: ["virtmeter.libvirt.error": "\(error)"])
            return []
        case nil:
            logger.debug("shut-off domains not listed this cycle",
                         metadata: ["virtmeter.libvirt.error": "no answer within \(callTimeout) s"])
            return []
        }
    }

    /// Decides, from the first stats records with a domain in them, whether the connection's driver returns the
    /// groups (else per-domain calls fill them in), and notes whether it reports `balloon.rss` (QEMU leaves it out
    /// for a busy domain only).
    private func learn(from records: [BulkStats], _ connection: LibvirtConnection) {
        if connection.servesGroups == nil, !records.isEmpty {
            connection.servesGroups = records.contains { $0.cpuTime != nil }
        }
        if !connection.servesRSS, records.contains(where: { $0.balloon.rss != nil }) { connection.servesRSS = true }
    }

    /// The bulk answer; nil when the bulk call missed its deadline or an earlier one is still stuck.
    private func bulkStats(_ connection: LibvirtConnection, stuck: Set<String>)
        throws(LibvirtError) -> [StatsRecord]? {
        if let since = bulkStuckSince, !stuck.contains("bulk") {
            logger.info("bulk stats call returned: reading domains in bulk again",
                        metadata: [
                            "virtmeter.libvirt.stuck_seconds": "\(Self.seconds(SampleClock.monotonic() - since))",
                        ])
            bulkStuckSince = nil
        }
        guard !stuck.contains("bulk") else { return nil }
        let fields = wanted.withLock { $0 }
        guard let answer = withDeadline("bulk", connection: connection, {
            DomainCalls.stats(connection, wanted: fields)
        }) else {
            bulkStuckSince = SampleClock.monotonic()
            logger.info("bulk stats call missed its deadline: reading domains one by one until it returns",
                        metadata: ["virtmeter.libvirt.deadline_seconds": "\(callTimeout)"])
            return nil
        }
        do {
            return try answer.get()
        } catch {
            // A dead connection (libvirtd restarted) is replaced at the next poll.
            if !connection.isAlive { self.connection = nil }
            throw error
        }
    }

    /// Logs each domain that stopped answering, once, and each that answers again, once, with how long it did not
    /// (from the start of the poll it first missed to the end of the one it answered). A domain is named from its
    /// second silent poll in a row: one slow answer on a loaded host (a deadline missed once) is only a debug line.
    private func track(_ silentNow: [(LibvirtDomain, String)], answered: [DomainSnapshot], listed: [LibvirtDomain],
                       started: Double) {
        let now = SampleClock.monotonic()
        for (domain, reason) in silentNow {
            var entry = silent[domain.uuid] ?? Silence(name: domain.name, since: started)
            entry.polls += 1
            let metadata: Logger.Metadata = [
                "virtmeter.domain.name": "\(domain.name)", "virtmeter.domain.uuid": "\(domain.uuid)",
                "virtmeter.domain.reason": "\(reason)",
            ]
            if entry.polls == Self.silentPollsBeforeWarning {
                entry.logged = true
                logger.warning("domain not answering: its samples are left out until it does", metadata: metadata)
            } else if entry.polls < Self.silentPollsBeforeWarning {
                logger.debug("domain did not answer this cycle", metadata: metadata)
            }
            silent[domain.uuid] = entry
        }
        for snapshot in answered {
            guard let entry = silent.removeValue(forKey: snapshot.uuid) else { continue }
            logger.log(level: entry.logged ? .notice : .debug, "domain answering again", metadata: [
                "virtmeter.domain.name": "\(entry.name)", "virtmeter.domain.uuid": "\(snapshot.uuid)",
                "virtmeter.domain.silent_seconds": "\(Self.seconds(now - entry.since))",
            ])
        }
        if silent.count > silentNow.count {
            let stillListed = Set(listed.map(\.uuid))
            silent = silent.filter { stillListed.contains($0.key) }
        }
    }

    private static func seconds(_ value: Double) -> String { String(format: "%.1f", value) }

    /// Whether a record (on a connection that reports `balloon.rss`) comes from a domain whose job libvirt could
    /// not take: QEMU then leaves out the groups that need it (balloon details, block), RSS among them.
    private static func isBusy(_ record: StatsRecord) -> Bool {
        record.stats.balloon.rss == nil && record.stats.state != .shutoff
    }

    /// The domain's cached XML while it is valid: same domain ID (no restart), younger than `xmlMaxAge`, and no
    /// lifecycle event since it was read.
    private func cachedXML(_ domain: LibvirtDomain, now: Double) -> ParsedXML? {
        guard let cached = xmlCache[domain.uuid], cached.domainID == domain.id, now - cached.readAt < xmlMaxAge
        else { return nil }
        return cached.xml
    }

    // MARK: Per domain (on a worker)

    /// The connections one poll's workers opened for reads of their own.
    private final class OpenCount: Sendable {
        let value = Mutex(0)
    }

    /// A worker's reads while the bulk call is stuck, on a connection of the worker's own, opened at its first item,
    /// each domain looked up on it by uuid. A domain read one by one then may hang as the bulk call did, and a call
    /// hung on a connection holds up the others on it (`maxStuckCalls`): on its own connection it holds up no other
    /// worker, and none of the next poll's calls.
    private static func ownConnectionReader(uri: String, readOnly: Bool, items: [DomainWork], opened count: OpenCount)
        -> (Int) -> Reading {
        var own: Result<LibvirtConnection, LibvirtError>?
        return { index in
            let opened = own ?? Result { () throws(LibvirtError) in
                let connection = try LibvirtConnection(uri: uri, readOnly: readOnly, events: nil)
                count.value.withLock { $0 += 1 }
                return connection
            }
            own = opened
            let connection: LibvirtConnection
            switch opened {
            case .success(let opened): connection = opened
            case .failure(let error): return .failed(error, calls: 0)
            }
            var work = items[index]
            do throws(LibvirtError) {
                work.domain = try DomainCalls.lookup(connection, uuid: work.domain.uuid)
            } catch {
                return .failed(error, calls: 1)
            }
            return read(work, connection: connection, calls: 1)
        }
    }

    /// Reads what `work` lacks: stats, XML, the groups the driver never returns, perf. Runs on a worker thread;
    /// `calls` were made for it already.
    private static func read(_ work: DomainWork, connection: LibvirtConnection, calls made: Int = 0) -> Reading {
        if work.shutOff { return readShutOff(work, calls: made) }
        var calls = made
        do throws(LibvirtError) {
            let record: StatsRecord
            var read: BulkStats?
            if let known = work.record {
                record = known
            } else {
                calls += 1
                let answers = try DomainCalls.stats(connection, [work.domain], wanted: work.wanted).get()
                guard let answer = answers.first else {
                    throw LibvirtError(operation: "virDomainListGetStats(\(work.domain.name))",
                                       code: Int32(VIR_ERR_NO_DOMAIN.rawValue), message: "domain not found")
                }
                if work.rssMeansAnswered, isBusy(answer) { return .busy(calls: calls) }
                (record, read) = (answer, answer.stats)
            }
            let (parsed, readXML, malformed) = try xml(work, calls: &calls)
            let xml = parsed.xml
            var snapshot = snapshot(work.domain, record.stats, xml, readAt: record.readAt)
            var fellBack = false
            if !(work.servesGroups ?? (record.stats.cpuTime != nil)) {
                let before = calls
                try fillIn(&snapshot, work.domain, record.stats, xml, devices: work.wanted.devices, calls: &calls)
                fellBack = calls > before
                snapshot.monotonicTime = SampleClock.monotonic()
            }
            readPerf(&snapshot, work.domain, record.stats, xml, calls: &calls)
            return .read(snapshot, xml: readXML, malformedXML: malformed, calls: calls, fellBack: fellBack,
                         record: read)
        } catch {
            return .failed(error, calls: calls)
        }
    }

    /// A shut-off domain: its metadata, and its state, vCPUs, memory and disk sizes when it is sampled (as
    /// ceilometer's `report_stopped_instance_metrics`). Runs on a worker thread.
    private static func readShutOff(_ work: DomainWork, calls made: Int) -> Reading {
        var calls = made
        do throws(LibvirtError) {
            let (parsed, readXML, malformed) = try xml(work, calls: &calls)
            let xml = parsed.xml
            var snapshot = shutOffSnapshot(work.domain, xml, readAt: SampleClock.monotonic())
            if work.sampleShutOff {
                snapshot.metadataOnly = false
                calls += 1
                try DomainCalls.readInfo(work.domain, into: &snapshot)
                snapshot.cpuTime = nil   // ceilometer reports no cpu for a shut-off domain
                snapshot.balloon.actual = snapshot.memoryKiB
                if work.wanted.devices.contains(.disks) {
                    snapshot.disks = DomainCalls.readBlockInfo(work.domain, xml.disks, calls: &calls)
                    xml.identify(&snapshot.disks)
                }
            }
            return .read(snapshot, xml: readXML, malformedXML: malformed, calls: calls, fellBack: false, record: nil)
        } catch {
            return .failed(error, calls: calls)
        }
    }

    /// The work's XML: the cached one, or read (`read` is then set, for the cache; `malformed` says why an
    /// unparsable one was read as empty).
    private static func xml(_ work: DomainWork, calls: inout Int)
        throws(LibvirtError) -> (xml: ParsedXML, read: ParsedXML?, malformed: String?) {
        if let xml = work.xml { return (xml, nil, nil) }
        calls += 1
        let parsed = try DomainCalls.xml(work.domain)
        let xml = ParsedXML(parsed.xml)
        return (xml, xml, parsed.malformed)
    }

    /// The perf group, for a domain whose XML enables perf events (the bulk call does not ask for it).
    private static func readPerf(_ snapshot: inout DomainSnapshot, _ domain: LibvirtDomain, _ bulk: BulkStats,
                                 _ xml: DomainXML, calls: inout Int) {
        guard xml.perfEnabled, bulk.perf == PerfStats() else { return }
        calls += 1
        snapshot.perf = DomainCalls.perf(domain)
    }

    /// Per-domain calls for the groups the record lacks (drivers that never return them in bulk); for disks and
    /// interfaces only when `devices` has them.
    private static func fillIn(_ snapshot: inout DomainSnapshot, _ domain: LibvirtDomain, _ bulk: BulkStats,
                               _ xml: DomainXML, devices: DeviceGroups, calls: inout Int) throws(LibvirtError) {
        if bulk.cpuTime == nil || bulk.vcpuCount == nil || bulk.maxMemoryKiB == nil {
            calls += 1
            try DomainCalls.readInfo(domain, into: &snapshot)
        }
        if bulk.memoryKiB == nil {
            calls += 1
            try DomainCalls.readMemoryStats(domain, into: &snapshot)
        }
        if !bulk.hasBlockGroup, devices.contains(.disks) {
            snapshot.disks = try DomainCalls.readDisks(domain, xml.disks, calls: &calls)
            xml.identify(&snapshot.disks)
        }
        if !bulk.hasInterfaceGroup, devices.contains(.interfaces) {
            snapshot.interfaces = try DomainCalls.readInterfaces(domain, xml.interfaces, calls: &calls)
        }
        dropStaleBalloon(&snapshot, xml)
    }

    /// One domain's snapshot from its stats record and XML.
    private static func snapshot(_ domain: LibvirtDomain, _ bulk: BulkStats, _ xml: DomainXML, readAt: Double)
        -> DomainSnapshot {
        var snapshot = DomainSnapshot(
            uuid: domain.uuid, name: domain.name, state: bulk.state ?? .running, vcpuCount: bulk.vcpuCount ?? 0,
            cpuTime: bulk.cpuTime, vcpuTimes: bulk.vcpuTimes.sorted { $0.key < $1.key }.map(\.value),
            maxMemoryKiB: bulk.maxMemoryKiB ?? 0, memoryKiB: bulk.memoryKiB ?? 0, balloon: bulk.balloon,
            disks: bulk.disks.sorted { $0.key < $1.key }.map(\.value).filter { !$0.name.isEmpty },
            interfaces: bulk.interfaces.sorted { $0.key < $1.key }.map(\.value).filter { !$0.name.isEmpty },
            nova: xml.nova, architecture: xml.architecture, osType: xml.osType, monotonicTime: readAt)
        snapshot.statsFields = bulk.declaredFields
        // The vNIC's metadata comes from the XML; an interface the XML shows without a device or MAC is left out,
        // as ceilometer does, and so is a disk without a source (an empty CD-ROM drive).
        snapshot.interfaces = snapshot.interfaces.compactMap { stats in
            guard var nic = xml.interfaces.first(where: { $0.name == stats.name }) else { return nil }
            nic.copyCounters(from: stats)
            return nic
        }
        snapshot.disks.removeAll { xml.disksWithoutSource.contains($0.name) }
        xml.identify(&snapshot.disks)
        for index in snapshot.disks.indices {
            snapshot.disks[index].alignAllocation(qcow2File: xml.qcow2FileDisks.contains(snapshot.disks[index].name))
        }
        snapshot.perfEnabled = xml.perfEnabled
        snapshot.perf = bulk.perf
        dropStaleBalloon(&snapshot, xml)
        return snapshot
    }

    /// A memballoon without a stats period: QEMU reports the figures the guest sent once at boot, for ever. They are
    /// not the guest's memory now, so virtmeter treats them as absent (no memory.usage, a warning), and the declared
    /// meters' balloon fields of the guest's reports with them. Without a balloon device libvirt's virDomainMemoryStats
    /// (what ceilometer reads) has no `actual`, while the bulk balloon.current still shows the boot-time size: no
    /// `memory` sample then, as in ceilometer.
    private static func dropStaleBalloon(_ snapshot: inout DomainSnapshot, _ xml: DomainXML) {
        if xml.hasMemballoon, (xml.balloonStatsPeriod ?? 0) == 0, snapshot.balloon.lastUpdate != nil {
            snapshot.balloon = BalloonStats(actual: snapshot.balloon.actual, rss: snapshot.balloon.rss)
            snapshot.statsFields.removeAll {
                $0.pattern.group == "balloon" && !Self.hostBalloonFields.contains($0.pattern.text)
            }
        }
        if !xml.hasMemballoon { snapshot.balloon.actual = nil }
    }

    /// The balloon fields QEMU and libvirt read on the host, not from the guest's reports.
    static let hostBalloonFields: Set<String> = ["balloon.current", "balloon.maximum", "balloon.rss"]

    // MARK: For `virtmeter check` (LibvirtHypervisor+Check.swift: its own timer, no deadlines here)

    /// The stats groups `check` asks for: the inspector's.
    static let groups = DomainCalls.groups

    /// One domain's snapshot from its stats record, with its XML (cached while valid) and per-domain calls for the
    /// groups the record lacks. Runs on `queue`.
    func snapshot(_ pointer: virDomainPtr, _ bulk: BulkStats, readAt: Double) throws(LibvirtError) -> DomainSnapshot {
        let uuid = try uuidString(pointer)
        guard let domain = LibvirtDomain(referencing: pointer) else {
            throw LibvirtError.last("virDomainGetUUIDString")
        }
        let xml: DomainXML
        if let cached = cachedXML(domain, now: readAt) {
            xml = cached.xml
        } else {
            xml = try DomainCalls.xml(domain).xml
            xmlCache[uuid] = CachedXML(domainID: domain.id, xml: ParsedXML(xml), readAt: readAt)
        }
        var snapshot = Self.snapshot(domain, bulk, xml, readAt: readAt)
        var calls = 0
        try Self.fillIn(&snapshot, domain, bulk, xml, devices: .all, calls: &calls)
        Self.readPerf(&snapshot, domain, bulk, xml, calls: &calls)
        return snapshot
    }

    /// The domain's UUID.
    func uuidString(_ domain: virDomainPtr) throws(LibvirtError) -> String {
        guard let uuid = LibvirtDomain.uuidString(domain) else { throw LibvirtError.last("virDomainGetUUIDString") }
        return uuid
    }
}

import CLibvirt
import VirtMeterCore

/// One domain's record from `virConnectGetAllDomainStats`, decoded from its typed parameters. The `has…` flags say
/// which groups the driver actually returned, so the inspector knows where to fall back to per-domain calls.
struct BulkStats: Sendable {
    var state: DomainState?
    var cpuTime: UInt64?
    var vcpuCount: Int?
    var vcpuTimes: [Int: VCPUTime] = [:]
    var maxMemoryKiB: UInt64?
    var memoryKiB: UInt64?
    var balloon = BalloonStats()
    var disks: [Int: DiskStats] = [:]
    var interfaces: [Int: InterfaceStats] = [:]
    var perf = PerfStats()
    var hasBlockGroup = false
    var hasInterfaceGroup = false
    /// The values declared meters read (`wanted`), their devices not yet named (see `declaredFields`).
    var fields: [StatsField] = []

    init(_ params: UnsafeMutablePointer<virTypedParameter>?, count: Int32, wanted: StatsFieldRequest = .none) {
        guard let params else { return }
        for index in 0..<Int(count) {
            let param = params[index]
            withUnsafeBytes(of: param.field) { raw in
                let name = UnsafeRawBufferPointer(rebasing: raw.prefix { $0 != 0 })
                apply(Self.parts(of: name), param)
                if !wanted.isEmpty { keep(String(decoding: name, as: UTF8.self), param, wanted) }
            }
        }
    }

    /// A parameter's name split at its first two dots (`block`, `0`, `rd.bytes`); nil without a dot. Each part is
    /// short enough for a string stored in place: no allocation per parameter.
    private static func parts(of name: UnsafeRawBufferPointer) -> (String, String, String?)? {
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: name[range]), as: UTF8.self)
        }
        guard let first = name.firstIndex(of: UInt8(ascii: ".")) else { return nil }
        guard let second = name[(first + 1)...].firstIndex(of: UInt8(ascii: ".")) else {
            return (text(0..<first), text(first + 1..<name.count), nil)
        }
        return (text(0..<first), text(first + 1..<second), text(second + 1..<name.count))
    }

    /// Keeps the parameter when a declared meter reads it.
    private mutating func keep(_ field: String, _ param: virTypedParameter, _ wanted: StatsFieldRequest) {
        guard let (pattern, index) = wanted.match(field, group: String(field.prefix { $0 != "." })) else { return }
        let value: Volume
        switch Int32(param.type) {
        case Int32(VIR_TYPED_PARAM_DOUBLE.rawValue): value = .double(param.value.d)
        case Int32(VIR_TYPED_PARAM_BOOLEAN.rawValue): value = .int(param.value.b != 0 ? 1 : 0)
        default:
            guard let number = Self.number(param) else { return }
            value = .counter(number)
        }
        fields.append(StatsField(pattern: pattern, index: index, value: value))
    }

    /// The kept values, each `block.N` and `net.N` one with its device's name (`vda`, `vnet0`); a device without a
    /// name is left out, as the built-in device meters leave it out.
    var declaredFields: [StatsField] {
        fields.compactMap { field in
            var named = field
            switch field.pattern.group {
            case "block" where field.pattern.isIndexed: named.device = disks[field.index]?.name
            case "net" where field.pattern.isIndexed: named.device = interfaces[field.index]?.name
            default: return named
            }
            return named.device?.isEmpty == false ? named : nil
        }
    }

    /// The parameter's value as an unsigned integer (libvirt uses int, uint, long long and ull for counters).
    private static func number(_ param: virTypedParameter) -> UInt64? {
        switch Int32(param.type) {
        case Int32(VIR_TYPED_PARAM_INT.rawValue): return UInt64(exactly: param.value.i)
        case Int32(VIR_TYPED_PARAM_UINT.rawValue): return UInt64(param.value.ui)
        case Int32(VIR_TYPED_PARAM_LLONG.rawValue): return UInt64(exactly: param.value.l)
        case Int32(VIR_TYPED_PARAM_ULLONG.rawValue): return param.value.ul
        default: return nil
        }
    }

    /// Applies a parameter named `group.key` or `group.N.key` (`parts(of:)`).
    private mutating func apply(_ parts: (String, String, String?)?, _ param: virTypedParameter) {
        guard let (group, second, rest) = parts else { return }
        let value = Self.number(param)
        switch group {
        case "state" where second == "state":
            state = value.flatMap { DomainState(rawValue: Int($0)) }
        case "cpu" where second == "time":
            cpuTime = value
        case "balloon":
            applyBalloon(second, value)
        case "vcpu":
            if second == "current" { vcpuCount = value.map(Int.init) }
            guard let rest, let n = Int(second) else { return }
            if rest == "time" { vcpuTimes[n, default: VCPUTime(time: nil, wait: nil)].time = value }
            if rest == "wait" { vcpuTimes[n, default: VCPUTime(time: nil, wait: nil)].wait = value }
            if rest == "delay" { vcpuTimes[n, default: VCPUTime(time: nil, wait: nil)].delay = value }
        case "block":
            hasBlockGroup = true
            guard let rest, let n = Int(second) else { return }
            applyBlock(&disks[n, default: DiskStats(name: "")], rest, param, value)
        case "net":
            hasInterfaceGroup = true
            guard let rest, let n = Int(second) else { return }
            applyInterface(&interfaces[n, default: InterfaceStats(name: "")], rest, param, value)
        case "perf":
            switch second {
            case "cpu_cycles": perf.cpuCycles = value
            case "instructions": perf.instructions = value
            case "cache_references": perf.cacheReferences = value
            case "cache_misses": perf.cacheMisses = value
            default: break
            }
        default:
            break
        }
    }

    private mutating func applyBalloon(_ key: String, _ value: UInt64?) {
        switch key {
        case "current": memoryKiB = value; balloon.actual = value
        case "maximum": maxMemoryKiB = value
        case "swap_in": balloon.swapIn = value
        case "swap_out": balloon.swapOut = value
        case "unused": balloon.unused = value
        case "available": balloon.available = value
        case "usable": balloon.usable = value
        case "rss": balloon.rss = value
        case "last-update": balloon.lastUpdate = value
        default: break
        }
    }

    private static func string(_ param: virTypedParameter) -> String? {
        guard Int32(param.type) == Int32(VIR_TYPED_PARAM_STRING.rawValue), let s = param.value.s else { return nil }
        return String(cString: s)
    }

    private func applyBlock(_ disk: inout DiskStats, _ key: String, _ param: virTypedParameter, _ value: UInt64?) {
        switch key {
        case "name": disk.name = Self.string(param) ?? ""
        case "rd.bytes": disk.readBytes = value
        case "rd.reqs": disk.readRequests = value
        case "rd.times": disk.readTimeNs = value
        case "wr.bytes": disk.writeBytes = value
        case "wr.reqs": disk.writeRequests = value
        case "wr.times": disk.writeTimeNs = value
        case "fl.reqs": disk.flushRequests = value
        case "fl.times": disk.flushTimeNs = value
        case "errors": disk.errors = value
        case "capacity": disk.capacity = value
        case "allocation": disk.allocation = value
        case "physical": disk.physical = value
        default: break
        }
    }

    private func applyInterface(_ nic: inout InterfaceStats, _ key: String, _ param: virTypedParameter,
                                _ value: UInt64?) {
        switch key {
        case "name": nic.name = Self.string(param) ?? ""
        case "rx.bytes": nic.rxBytes = value
        case "rx.pkts": nic.rxPackets = value
        case "rx.errs": nic.rxErrors = value
        case "rx.drop": nic.rxDrop = value
        case "tx.bytes": nic.txBytes = value
        case "tx.pkts": nic.txPackets = value
        case "tx.errs": nic.txErrors = value
        case "tx.drop": nic.txDrop = value
        default: break
        }
    }
}

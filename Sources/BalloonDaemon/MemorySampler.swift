import BalloonController
import BalloonProtocol
import BalloonStats
import BalloonSystem

/// Reads /proc/meminfo, /proc/vmstat and /proc/pressure/memory through
/// descriptors kept open, and builds the `stats` reply.
public final class MemorySampler: MemoryProbe {
    private let meminfo: ProcFileReader
    private let vmstat: ProcFileReader
    /// nil when the kernel has no PSI (CONFIG_PSI off or psi=0).
    private let pressure: ProcFileReader?
    public let pageSize: UInt64

    public init(procRoot: String = "/proc") throws(SystemError) {
        meminfo = try ProcFileReader("\(procRoot)/meminfo")
        vmstat = try ProcFileReader("\(procRoot)/vmstat")
        pressure = try? ProcFileReader("\(procRoot)/pressure/memory")
        pageSize = UInt64(PageSize.bytes)
    }

    public var hasPressure: Bool { pressure != nil }

    public func meminfoValues() -> [String: UInt64] {
        (try? meminfo.read()).map { ProcParse.meminfo($0) } ?? [:]
    }

    /// MemAvailable as last read (by the controller's probe or the floor check).
    public private(set) var lastAvailable: UInt64?

    public func availableBytes() -> UInt64? {
        lastAvailable = meminfoValues()["MemAvailable"]
        return lastAvailable
    }

    public func vmstatValues() -> [String: UInt64] {
        (try? vmstat.read()).map { ProcParse.vmstat($0) } ?? [:]
    }

    public func memoryTotal() -> UInt64? { meminfoValues()["MemTotal"] }

    public func readPressure() -> Pressure? {
        guard let pressure, let bytes = try? pressure.read() else { return nil }
        return ProcParse.pressure(bytes)
    }

    public func virtioStats() -> VirtioStats {
        let mem = meminfoValues()
        let vm = vmstatValues()
        return VirtioStats(meminfo: mem, vmstat: vm, pageSize: pageSize)
    }

    /// The `stats` reply and `STATS` event body (docs/protocol.md).
    public func statsJSON(target: UInt64, actual: UInt64) -> JSON {
        let stats = virtioStats()
        let values: [(String, JSON)] = stats.present.map { ($0.stat.name, .uint($0.value)) }
        let pressureJSON: JSON = readPressure().map { p in
            .object([("some", Self.json(p.some)), ("full", Self.json(p.full))])
        } ?? .null
        return [
            "stats": .object(values),
            "pressure": pressureJSON,
            "balloon": ["target": .uint(target), "actual": .uint(actual)],
            "timestamp": wallClockTimestamp().json,
        ]
    }

    static func json(_ line: PressureLine?) -> JSON {
        guard let line else { return .null }
        return [
            "avg10": .double(line.avg10), "avg60": .double(line.avg60), "avg300": .double(line.avg300),
            "total": .uint(line.total),
        ]
    }
}

/// The /proc/vmstat counters that mean the guest is short of memory.
struct ReclaimCounters: Equatable {
    var allocStalls: UInt64
    var directScans: UInt64
    var oomKills: UInt64

    init(vmstat: [String: UInt64]) {
        // allocstall_<zone> on current kernels, one allocstall on old ones.
        allocStalls = vmstat.filter { $0.key.hasPrefix("allocstall") }.values.reduce(0, &+)
        directScans = vmstat["pgscan_direct"] ?? vmstat.filter { $0.key.hasPrefix("pgscan_direct_") && $0.key != "pgscan_direct_throttle" }.values.reduce(0, &+)
        oomKills = vmstat["oom_kill"] ?? 0
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonProtocol
import BalloonStats
import BalloonSystem

/// Reads /proc/meminfo, /proc/vmstat and /proc/pressure/memory through
/// descriptors kept open, and builds the `stats` reply. A /proc file that
/// cannot be read reads as empty: its values are left out of the stats and
/// the controller sees no MemAvailable (it then does not hold back growth).
public final class MemorySampler: MemoryProbe {
    private let meminfo: ProcFileReader
    private let vmstat: ProcFileReader
    /// nil when the kernel has no PSI (CONFIG_PSI off or psi=0).
    private let pressure: ProcFileReader?
    public let pageSize: UInt64

    /// Reading the running kernel (not a fixture directory): MemFree then
    /// comes from sysinfo(2).
    private let live: Bool

    public init(procRoot: String = "/proc") throws(SystemError) {
        live = procRoot == "/proc"
        meminfo = try ProcFileReader("\(procRoot)/meminfo")
        vmstat = try ProcFileReader("\(procRoot)/vmstat")
        pressure = try? ProcFileReader("\(procRoot)/pressure/memory")  // Absent without PSI: nil says so.
        pageSize = UInt64(PageSize.bytes)
    }

    public var hasPressure: Bool { pressure != nil }

    public func meminfoValues() -> [String: UInt64] {
        (try? meminfo.read()).map { ProcParse.meminfo($0) } ?? [:]  // Unreadable reads as empty (above).
    }

    /// MemFree alone, for the free-memory mode's samples (4 a second): from
    /// sysinfo(2) on the running kernel (the same counter, without the ~50
    /// lines of /proc/meminfo the kernel would print and we would scan:
    /// most of an idle sample's cost on a slow vCPU), else the one key.
    public func memFree() -> UInt64? {
        if live, let free = try? SystemMemory.freeBytes() { return free }  // Failing: /proc/meminfo below.
        return meminfoValue("MemFree")
    }

    /// One /proc/meminfo value (bytes for kB lines); nil if unreadable or absent.
    public func meminfoValue(_ key: String) -> UInt64? {
        (try? meminfo.read()).flatMap { ProcParse.meminfo($0, key: key) }
    }

    /// One /proc/vmstat value; nil if unreadable or absent.
    public func vmstatValue(_ key: String) -> UInt64? {
        (try? vmstat.read()).flatMap { ProcParse.vmstat($0, key: key) }
    }

    /// MemAvailable as last read (by the controller's probe or the floor check).
    public private(set) var lastAvailable: UInt64?

    public func availableBytes() -> UInt64? {
        // Once a second while the balloon holds memory: one key, no dictionary.
        lastAvailable = meminfoValue("MemAvailable")
        return lastAvailable
    }

    /// The /proc/vmstat values whose keys start with one of `prefixes`.
    public func vmstatValues(keyPrefixes prefixes: [String]) -> [String: UInt64] {
        (try? vmstat.read()).map { ProcParse.vmstat($0, keyPrefixes: prefixes) } ?? [:]  // As above.
    }

    public func vmstatValues() -> [String: UInt64] {
        (try? vmstat.read()).map { ProcParse.vmstat($0) } ?? [:]  // Unreadable reads as empty (above).
    }

    /// MemTotal, or nil if /proc/meminfo has none; a failed read throws.
    public func memoryTotal() throws(SystemError) -> UInt64? { ProcParse.meminfo(try meminfo.read())["MemTotal"] }

    public func readPressure() -> Pressure? {
        // Unreadable reads as no PSI line (above).
        guard let pressure, let bytes = try? pressure.read() else { return nil }
        return ProcParse.pressure(bytes)
    }

    public func virtioStats() -> VirtioStats {
        let mem = meminfoValues()
        let vm = vmstatValues()
        return VirtioStats(meminfo: mem, vmstat: vm, pageSize: pageSize)
    }

    /// The `stats` reply and `STATS` event body (docs/protocol.md).
    public func statsReply(target: UInt64, actual: UInt64, freeMemoryHeld: UInt64 = 0) -> StatsReply {
        StatsReply(
            stats: virtioStats(), pressure: readPressure(), balloonTarget: target, balloonActual: actual,
            freeMemoryHeld: freeMemoryHeld, timestamp: wallClockTimestamp())
    }
}

/// The /proc/vmstat counters that mean the guest is short of memory.
struct ReclaimCounters: Equatable {
    /// The only keys `init(vmstat:)` looks at.
    static let keyPrefixes = ["allocstall", "pgscan_direct", "oom_kill"]

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

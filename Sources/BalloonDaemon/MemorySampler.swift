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

    /// A few /proc/meminfo values from one read, in the order asked; each nil
    /// if unreadable or absent.
    public func meminfoValues(_ keys: [String]) -> [UInt64?] {
        guard let raw = try? meminfo.read() else { return keys.map { _ in nil } }
        return keys.map { ProcParse.meminfo(raw, key: $0) }
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

    /// The floor check's reclaim counters; nil if /proc/vmstat is unreadable.
    func reclaimCounters() -> ReclaimCounters? {
        guard let raw = try? vmstat.read() else { return nil }  // Unreadable: no news (above).
        return ReclaimCounters(vmstat: raw)
    }

    /// The /proc/vmstat values whose keys start with one of `prefixes`.
    public func vmstatValues(keyPrefixes prefixes: [String]) -> [String: UInt64] {
        (try? vmstat.read()).map { ProcParse.vmstat($0, keyPrefixes: prefixes) } ?? [:]  // As above.
    }

    /// Pages the kernel moved or replaced (`RescanGate`): /proc/vmstat
    /// `pgmigrate_success` + `thp_collapse_alloc`; nil when it has neither.
    public func pagesMoved() -> UInt64? {
        let counts = vmstatValues(keyPrefixes: Self.movedKeys)
        let known = Self.movedKeys.compactMap { counts[$0] }
        return known.isEmpty ? nil : known.reduce(0, &+)
    }

    static let movedKeys = ["pgmigrate_success", "thp_collapse_alloc"]

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
        VirtioStats(meminfo: meminfoValues(), vmstat: vmstatValues(), pageSize: pageSize)
    }

    /// Page-cache refaults since boot (`StatsReply.fileRefaults`, the cold
    /// cache's guard): the file count where the kernel splits it (5.9 on),
    /// else the one total.
    static let refaultKeys = ["workingset_refault_file", "workingset_refault"]

    static func fileRefaults(vmstat: [String: UInt64]) -> UInt64? {
        refaultKeys.lazy.compactMap { vmstat[$0] }.first
    }

    /// The same, read by key (no dictionary of every counter).
    public func fileRefaults() -> UInt64? {
        Self.refaultKeys.lazy.compactMap { self.vmstatValue($0) }.first
    }

    /// The `stats` reply and `STATS` event body (docs/protocol.md).
    public func statsReply(target: UInt64, actual: UInt64, freeMemoryHeld: UInt64 = 0, memAvailableFloor: UInt64? = nil) -> StatsReply {
        let vm = vmstatValues()
        return StatsReply(
            stats: VirtioStats(meminfo: meminfoValues(), vmstat: vm, pageSize: pageSize), pressure: readPressure(),
            balloonTarget: target, balloonActual: actual, freeMemoryHeld: freeMemoryHeld, memAvailableFloor: memAvailableFloor,
            fileRefaults: Self.fileRefaults(vmstat: vm), timestamp: wallClockTimestamp())
    }
}

/// The /proc/vmstat counters that mean the guest is short of memory.
struct ReclaimCounters: Equatable {
    /// The only keys it looks at start with these.
    static let keyPrefixes = ["allocstall", "pgscan_direct", "oom_kill"]

    var allocStalls: UInt64 = 0
    var directScans: UInt64 = 0
    var oomKills: UInt64 = 0

    /// From /proc/vmstat's bytes, with no key made.
    init(vmstat raw: UnsafeRawBufferPointer) {
        var sum = Sum()
        ProcParse.forEachVmstat(raw, keyPrefixes: Self.keyPrefixes) { key, value in sum.add(key, value) }
        self = sum.counters
    }

    init(vmstat: [String: UInt64]) {
        var sum = Sum()
        for (key, value) in vmstat {
            var key = key
            key.withUTF8 { sum.add($0, value) }
        }
        self = sum.counters
    }

    /// allocstall_<zone> on current kernels, one allocstall on old ones;
    /// pgscan_direct, or on kernels before 4.8 the sum of pgscan_direct_<zone>.
    private struct Sum {
        var allocStalls: UInt64 = 0
        var pgscanDirect: UInt64?
        var pgscanDirectZones: UInt64 = 0
        var oomKill: UInt64?

        mutating func add(_ key: UnsafeBufferPointer<UInt8>, _ value: UInt64) {
            if key.starts(with: "allocstall".utf8) {
                allocStalls &+= value
            } else if key.elementsEqual("pgscan_direct".utf8) {
                pgscanDirect = value
            } else if key.starts(with: "pgscan_direct_".utf8), !key.elementsEqual("pgscan_direct_throttle".utf8) {
                pgscanDirectZones &+= value
            } else if key.elementsEqual("oom_kill".utf8) {
                oomKill = value
            }
        }

        var counters: ReclaimCounters {
            ReclaimCounters(allocStalls: allocStalls, directScans: pgscanDirect ?? pgscanDirectZones, oomKills: oomKill ?? 0)
        }
    }

    init(allocStalls: UInt64, directScans: UInt64, oomKills: UInt64) {
        self.allocStalls = allocStalls
        self.directScans = directScans
        self.oomKills = oomKills
    }
}

// SPDX-License-Identifier: Apache-2.0
// The 16 statistics of the virtio balloon stats queue, computed from
// /proc/meminfo and /proc/vmstat the way the Linux virtio_balloon driver's
// update_balloon_stats() computes them (Linux 6.10 and later, which added
// tags 10-15). docs/stats.md lists the source of each value.

/// The stats-queue tags 0-15, named as QEMU names them without "stat-".
package enum VirtioStat: Int, CaseIterable, Sendable {
    case swapIn = 0, swapOut, majorFaults, minorFaults, freeMemory, totalMemory, availableMemory, diskCaches,
        htlbPgalloc, htlbPgfail, oomKills, allocStalls, asyncScans, directScans, asyncReclaims, directReclaims

    /// The tag number on the wire.
    @inlinable package var tag: Int { rawValue }

    package var name: String {
        switch self {
        case .swapIn: "swap-in"
        case .swapOut: "swap-out"
        case .majorFaults: "major-faults"
        case .minorFaults: "minor-faults"
        case .freeMemory: "free-memory"
        case .totalMemory: "total-memory"
        case .availableMemory: "available-memory"
        case .diskCaches: "disk-caches"
        case .htlbPgalloc: "htlb-pgalloc"
        case .htlbPgfail: "htlb-pgfail"
        case .oomKills: "oom-kills"
        case .allocStalls: "alloc-stalls"
        case .asyncScans: "async-scans"
        case .directScans: "direct-scans"
        case .asyncReclaims: "async-reclaims"
        case .directReclaims: "direct-reclaims"
        }
    }

    /// True for stats measured in bytes, false for event counts.
    package var isBytes: Bool {
        switch self {
        case .swapIn, .swapOut, .freeMemory, .totalMemory, .availableMemory, .diskCaches,
            .asyncScans, .directScans, .asyncReclaims, .directReclaims:
            true
        case .majorFaults, .minorFaults, .htlbPgalloc, .htlbPgfail, .oomKills, .allocStalls:
            false
        }
    }

    package init?(name: String) {
        guard let stat = VirtioStat.allCases.first(where: { $0.name == name }) else { return nil }
        self = stat
    }
}

/// A set of virtio balloon stats; a stat whose source counter the kernel does
/// not provide is absent (nil), never zero.
public struct VirtioStats: Sendable, Equatable {
    private var values: (
        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
    ) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private var mask: UInt16 = 0

    package init() {}

    package subscript(_ stat: VirtioStat) -> UInt64? {
        get {
            guard mask & (1 << stat.rawValue) != 0 else { return nil }
            return withUnsafeBytes(of: values) { $0.load(fromByteOffset: stat.rawValue * 8, as: UInt64.self) }
        }
        set {
            let bit: UInt16 = 1 << stat.rawValue
            if let newValue {
                withUnsafeMutableBytes(of: &values) {
                    $0.storeBytes(of: newValue, toByteOffset: stat.rawValue * 8, as: UInt64.self)
                }
                mask |= bit
            } else {
                withUnsafeMutableBytes(of: &values) {
                    $0.storeBytes(of: 0, toByteOffset: stat.rawValue * 8, as: UInt64.self)
                }
                mask &= ~bit
            }
        }
    }

    /// The present stats in tag order.
    package var present: [(stat: VirtioStat, value: UInt64)] {
        var out: [(stat: VirtioStat, value: UInt64)] = []
        out.reserveCapacity(mask.nonzeroBitCount)
        for stat in VirtioStat.allCases {
            if let v = self[stat] { out.append((stat, v)) }
        }
        return out
    }

    public static func == (a: VirtioStats, b: VirtioStats) -> Bool {
        guard a.mask == b.mask else { return false }
        for stat in VirtioStat.allCases where a[stat] != b[stat] { return false }
        return true
    }

    /// Computed exactly as the current Linux virtio_balloon driver's
    /// update_balloon_stats() computes them:
    ///
    /// - swap-in/swap-out: vmstat pswpin/pswpout (pages) x pageSize
    /// - major/minor-faults: vmstat pgmajfault/pgfault (counts)
    /// - free/total/available-memory: meminfo MemFree/MemTotal/MemAvailable
    ///   (already bytes after `ProcParse.meminfo`)
    /// - disk-caches: vmstat nr_file_pages (NR_FILE_PAGES) x pageSize; this is
    ///   meminfo Cached + Buffers + SwapCached, not Cached
    /// - htlb-pgalloc/pgfail: vmstat htlb_buddy_alloc_success/_fail (counts)
    /// - oom-kills: vmstat oom_kill (count)
    /// - alloc-stalls: sum of every vmstat allocstall_<zone> (count); before
    ///   the per-zone split, the single allocstall counter
    /// - async/direct-scans: vmstat pgscan_kswapd/pgscan_direct x pageSize
    /// - async/direct-reclaims: vmstat pgsteal_kswapd/pgsteal_direct x pageSize
    ///   (before 4.8 these four are per zone, e.g. pgscan_kswapd_normal, and
    ///   are summed over the zones when the unsplit counter is missing)
    ///
    /// `pageSize` is the kernel page size in bytes (sysconf(_SC_PAGESIZE)).
    /// Products and sums saturate at UInt64.max instead of trapping.
    package init(meminfo: [String: UInt64], vmstat: [String: UInt64], pageSize: UInt64) {
        self.init()
        func bytes(_ pages: UInt64?) -> UInt64? {
            guard let pages else { return nil }
            let (v, overflow) = pages.multipliedReportingOverflow(by: pageSize)
            return overflow ? .max : v
        }
        self[.swapIn] = bytes(vmstat["pswpin"])
        self[.swapOut] = bytes(vmstat["pswpout"])
        self[.majorFaults] = vmstat["pgmajfault"]
        self[.minorFaults] = vmstat["pgfault"]
        self[.freeMemory] = meminfo["MemFree"]
        self[.totalMemory] = meminfo["MemTotal"]
        self[.availableMemory] = meminfo["MemAvailable"]
        self[.diskCaches] = bytes(vmstat["nr_file_pages"])
        self[.htlbPgalloc] = vmstat["htlb_buddy_alloc_success"]
        self[.htlbPgfail] = vmstat["htlb_buddy_alloc_fail"]
        self[.oomKills] = vmstat["oom_kill"]
        self[.allocStalls] = Self.allocStalls(vmstat)
        self[.asyncScans] = bytes(Self.zoned(vmstat, "pgscan_kswapd"))
        self[.directScans] = bytes(Self.zoned(vmstat, "pgscan_direct"))
        self[.asyncReclaims] = bytes(Self.zoned(vmstat, "pgsteal_kswapd"))
        self[.directReclaims] = bytes(Self.zoned(vmstat, "pgsteal_direct"))
    }

    /// Parses both files and computes the stats.
    package init(meminfo: some Collection<UInt8>, vmstat: some Collection<UInt8>, pageSize: UInt64) {
        self.init(meminfo: ProcParse.meminfo(meminfo), vmstat: ProcParse.vmstat(vmstat), pageSize: pageSize)
    }

    /// Zone suffixes /proc/vmstat uses for per-zone counters (mm/vmstat.c
    /// TEXTS_FOR_ZONES): DMA, DMA32, Normal, HighMem, Movable, Device.
    static let zoneSuffixes = ["_dma", "_dma32", "_normal", "_high", "_movable", "_device"]

    @inline(__always)
    static func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (s, o) = a.addingReportingOverflow(b)
        return o ? .max : s
    }

    /// The unsplit counter if present, else the sum of its per-zone variants
    /// (only the known zone suffixes: "pgscan_direct_throttle" is not a zone),
    /// else nil.
    static func zoned(_ vmstat: [String: UInt64], _ name: String) -> UInt64? {
        if let v = vmstat[name] { return v }
        var sum: UInt64?
        for suffix in zoneSuffixes {
            if let v = vmstat[name + suffix] { sum = saturatingAdd(sum ?? 0, v) }
        }
        return sum
    }

    /// Sum of every allocstall_<zone> (the driver sums all MAX_NR_ZONES zone
    /// counters), or the pre-split single "allocstall" counter, or nil.
    static func allocStalls(_ vmstat: [String: UInt64]) -> UInt64? {
        var sum: UInt64?
        for (key, value) in vmstat where key.utf8.count > 11 && key.hasPrefix("allocstall_") {
            sum = saturatingAdd(sum ?? 0, value)
        }
        return sum ?? vmstat["allocstall"]
    }
}

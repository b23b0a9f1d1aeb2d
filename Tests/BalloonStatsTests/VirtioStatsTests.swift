// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing

@testable import BalloonStats

@Suite("VirtioStat and VirtioStats")
struct VirtioStatsTests {
    @Test func tagsAndNames() {
        let names = [
            "swap-in", "swap-out", "major-faults", "minor-faults", "free-memory", "total-memory", "available-memory",
            "disk-caches", "htlb-pgalloc", "htlb-pgfail", "oom-kills", "alloc-stalls", "async-scans", "direct-scans",
            "async-reclaims", "direct-reclaims",
        ]
        #expect(VirtioStat.allCases.count == 16)
        #expect(VirtioStat.allCases.map(\.rawValue) == Array(0...15))
        #expect(VirtioStat.allCases.map(\.name) == names)
        for stat in VirtioStat.allCases {
            #expect(VirtioStat(name: stat.name) == stat)
        }
        #expect(VirtioStat(name: "stat-swap-in") == nil)
        #expect(VirtioStat(name: "hugetlb-allocations") == nil)  // the kernel header's name, not QEMU's
        #expect(VirtioStat(name: "") == nil)
        #expect(VirtioStat.allCases.filter { !$0.isBytes } == [
            .majorFaults, .minorFaults, .htlbPgalloc, .htlbPgfail, .oomKills, .allocStalls,
        ])
    }

    @Test func subscriptAndPresent() {
        var s = VirtioStats()
        #expect(s.present.isEmpty)
        s[.directReclaims] = 5
        s[.swapIn] = 0
        s[.oomKills] = .max
        #expect(s[.swapIn] == 0)
        #expect(s[.swapOut] == nil)
        #expect(s.present.map(\.stat) == [.swapIn, .oomKills, .directReclaims])
        #expect(s.present.map(\.value) == [0, .max, 5])
        var t = VirtioStats()
        t[.oomKills] = .max
        t[.swapIn] = 0
        t[.directReclaims] = 5
        #expect(s == t)
        t[.directReclaims] = nil
        #expect(s != t)
        #expect(t[.directReclaims] == nil)
        s[.directReclaims] = nil
        #expect(s == t)
    }

    @Test func missingSourceIsAbsentNotZero() {
        let s = VirtioStats(meminfo: [:], vmstat: [:], pageSize: 4096)
        #expect(s.present.isEmpty)
        let only = VirtioStats(meminfo: ["MemTotal": 1024], vmstat: ["pgfault": 3], pageSize: 4096)
        #expect(only.present.map(\.stat) == [.minorFaults, .totalMemory])
    }

    @Test func pageConversionUsesPageSize() {
        let v: [String: UInt64] = [
            "pswpin": 2, "pswpout": 3, "nr_file_pages": 5, "pgscan_kswapd": 7, "pgscan_direct": 11,
            "pgsteal_kswapd": 13, "pgsteal_direct": 17, "pgfault": 19, "pgmajfault": 23, "oom_kill": 29,
            "htlb_buddy_alloc_success": 31, "htlb_buddy_alloc_fail": 37, "allocstall_normal": 41,
        ]
        for page: UInt64 in [4096, 16384, 65536] {
            let s = VirtioStats(meminfo: [:], vmstat: v, pageSize: page)
            #expect(s[.swapIn] == 2 * page)
            #expect(s[.swapOut] == 3 * page)
            #expect(s[.diskCaches] == 5 * page)
            #expect(s[.asyncScans] == 7 * page)
            #expect(s[.directScans] == 11 * page)
            #expect(s[.asyncReclaims] == 13 * page)
            #expect(s[.directReclaims] == 17 * page)
            // Counts stay counts.
            #expect(s[.minorFaults] == 19)
            #expect(s[.majorFaults] == 23)
            #expect(s[.oomKills] == 29)
            #expect(s[.htlbPgalloc] == 31)
            #expect(s[.htlbPgfail] == 37)
            #expect(s[.allocStalls] == 41)
        }
    }

    @Test func allocStallsSumAllZones() {
        let v = ProcParse.vmstat([UInt8](
            "allocstall_dma 1\nallocstall_dma32 2\nallocstall_normal 3\nallocstall_movable 4\nallocstall_device 5\n"))
        #expect(VirtioStats(meminfo: [:], vmstat: v, pageSize: 4096)[.allocStalls] == 15)
        // Before the per-zone split: the single counter.
        #expect(VirtioStats(meminfo: [:], vmstat: ["allocstall": 83165], pageSize: 4096)[.allocStalls] == 83165)
        // Per-zone counters win over a stray single one.
        #expect(VirtioStats(meminfo: [:], vmstat: ["allocstall": 9, "allocstall_normal": 1], pageSize: 1)[.allocStalls] == 1)
    }

    @Test func perZoneScanAndStealCountersAreSummed() {
        // Shape of a 3.x-4.7 /proc/vmstat (per-zone LRU).
        let v = ProcParse.vmstat([UInt8]("""
            pgsteal_kswapd_dma 0
            pgsteal_kswapd_dma32 78783
            pgsteal_kswapd_normal 254128
            pgsteal_kswapd_movable 0
            pgsteal_direct_dma 0
            pgsteal_direct_dma32 44
            pgsteal_direct_normal 6484
            pgsteal_direct_movable 0
            pgscan_kswapd_dma 0
            pgscan_kswapd_dma32 107656
            pgscan_kswapd_normal 358784
            pgscan_kswapd_movable 0
            pgscan_direct_dma 0
            pgscan_direct_dma32 67
            pgscan_direct_normal 6796
            pgscan_direct_movable 0
            pgscan_direct_throttle 12345

            """))
        let s = VirtioStats(meminfo: [:], vmstat: v, pageSize: 4096)
        #expect(s[.asyncReclaims] == (78783 + 254128) * 4096)
        #expect(s[.directReclaims] == (44 + 6484) * 4096)
        #expect(s[.asyncScans] == (107656 + 358784) * 4096)
        #expect(s[.directScans] == (67 + 6796) * 4096)  // pgscan_direct_throttle is not a zone
        // HighMem zone ("_high") on 32-bit kernels.
        let high = VirtioStats(meminfo: [:], vmstat: ["pgscan_kswapd_normal": 1, "pgscan_kswapd_high": 2], pageSize: 1)
        #expect(high[.asyncScans] == 3)
    }

    @Test func unsplitCounterWinsOverZones() {
        let s = VirtioStats(meminfo: [:], vmstat: ["pgscan_kswapd": 7, "pgscan_kswapd_normal": 100], pageSize: 1)
        #expect(s[.asyncScans] == 7)
    }

    @Test func onlyThrottleIsNotAScanCounter() {
        let s = VirtioStats(meminfo: [:], vmstat: ["pgscan_direct_throttle": 5], pageSize: 4096)
        #expect(s[.directScans] == nil)
    }

    @Test func inputCollectionKindsAgree() throws {
        let bytes = try Fixture.bytes("linux-6.18-local", "vmstat")
        let expected = ProcParse.vmstat(bytes)
        #expect(ProcParse.vmstat(bytes[...]) == expected)  // ArraySlice
        #expect(ProcParse.vmstat(Data(bytes)) == expected)  // Foundation Data
        #expect(ProcParse.vmstat(bytes.lazy.map { $0 }) == expected)  // no contiguous storage
        #expect(bytes.withUnsafeBytes { ProcParse.vmstat($0) } == expected)  // raw buffer
        #expect(ProcParse.vmstat(bytes[10...]) == ProcParse.vmstat(Array(bytes[10...])))  // non-zero start index
    }
}

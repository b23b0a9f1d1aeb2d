// SPDX-License-Identifier: Apache-2.0
import BalloonTestSupport
import Testing

@testable import BalloonStats

// Expected values below are read by hand from the fixture text files.

/// What one kernel's captured /proc files must parse to.
struct KernelFacts: Sendable, CustomTestStringConvertible {
    var kernel: String
    var meminfoCount: Int
    /// Spot checks; nil: the key must be absent.
    var meminfo: [(String, UInt64?)]
    var vmstatCount: Int
    var vmstat: [(String, UInt64?)]
    var virtio: [(VirtioStat, UInt64?)]
    /// How many virtio stats are present, or exactly which.
    var present: Present
    /// The /proc/pressure/memory lines, or nil if the capture has no such file.
    var pressure: (some: PressureLine?, full: PressureLine?)?

    enum Present: Sendable { case count(Int), exactly([VirtioStat]) }

    var testDescription: String { kernel }
}

@Suite("/proc fixtures of real kernels")
struct FixtureTests {
    static let kernels: [KernelFacts] = [
        KernelFacts(
            kernel: "linux-6.18-local",
            meminfoCount: 54,
            meminfo: [
                ("MemTotal", 24_684_092 * KiB), ("MemFree", 23_083_372 * KiB), ("MemAvailable", 24_280_972 * KiB),
                ("Active(anon)", 1_512 * KiB), ("VmallocTotal", 34_359_738_367 * KiB), ("Balloon", 0),
                ("HugePages_Total", 0),  // no unit: as-is
                ("Hugepagesize", 2_048 * KiB), ("DirectMap1G", 25_165_824 * KiB),
            ],
            vmstatCount: 192,
            vmstat: [
                ("pgfault", 4_144_380), ("pgmajfault", 1_670), ("nr_file_pages", 343_375), ("allocstall_device", 0),
                ("pgscan_kswapd", 0), ("pgscan_kswapd_normal", nil),
            ],
            virtio: [
                (.swapIn, 0), (.swapOut, 0), (.majorFaults, 1_670), (.minorFaults, 4_144_380),
                (.freeMemory, 23_083_372 * KiB), (.totalMemory, 24_684_092 * KiB), (.availableMemory, 24_280_972 * KiB),
                (.diskCaches, 343_375 * 4096),
                // NR_FILE_PAGES is Cached + Buffers + SwapCached (1350408 + 23092 + 0 kB).
                (.diskCaches, (1_350_408 + 23_092 + 0) * KiB),
                (.htlbPgalloc, 0), (.htlbPgfail, 0), (.oomKills, 0), (.allocStalls, 0), (.asyncScans, 0),
                (.directScans, 0), (.asyncReclaims, 0), (.directReclaims, 0),
            ],
            present: .count(16),
            pressure: (some: PressureLine(avg10: 0, avg60: 0, avg300: 0, total: 0),
                       full: PressureLine(avg10: 0, avg60: 0, avg300: 0, total: 0))),
        KernelFacts(
            kernel: "linux-4.18-rhel8",
            meminfoCount: 47,
            meminfo: [
                ("MemTotal", 8_164_548 * KiB), ("MemFree", 851_960 * KiB), ("MemAvailable", 1_950_080 * KiB),
                ("Cached", 1_235_532 * KiB), ("AnonHugePages", 141_312 * KiB), ("HugePages_Free", 0), ("Balloon", nil),
            ],
            vmstatCount: 133,
            vmstat: [
                ("pgfault", 1_677_493), ("pgmajfault", 2_422), ("nr_file_pages", 309_959), ("thp_fault_alloc", 547),
                ("allocstall_normal", 0),
                ("allocstall_device", nil),  // no ZONE_DEVICE in this config
            ],
            virtio: [
                (.swapIn, 0), (.swapOut, 0), (.majorFaults, 2_422), (.minorFaults, 1_677_493),
                (.freeMemory, 851_960 * KiB), (.totalMemory, 8_164_548 * KiB), (.availableMemory, 1_950_080 * KiB),
                (.diskCaches, 309_959 * 4096),
                (.diskCaches, (1_235_532 + 4_304 + 0) * KiB),  // Cached + Buffers + SwapCached
                (.htlbPgalloc, 0), (.htlbPgfail, 0), (.oomKills, 0), (.allocStalls, 0), (.asyncScans, 0),
                (.directScans, 0), (.asyncReclaims, 0), (.directReclaims, 0),
            ],
            present: .count(16),
            // 4.18 predates PSI being on by default in RHEL 8; the sosreport has none.
            pressure: nil),
        KernelFacts(
            kernel: "linux-3.4.5-android",
            meminfoCount: 37,
            meminfo: [
                ("MemTotal", 990_732 * KiB), ("MemFree", 221_132 * KiB), ("HighTotal", 521_216 * KiB),
                ("Committed_AS", 5_714_904 * KiB),
                ("MemAvailable", nil),  // added in 3.14
                ("HugePages_Total", nil),  // no CONFIG_HUGETLB_PAGE
            ],
            vmstatCount: 73,
            vmstat: [
                ("pgfault", 5_342_442), ("pgmajfault", 2_075), ("nr_file_pages", 88_279), ("pgalloc_high", 347_327),
                ("allocstall", 0), ("pgscan_kswapd_high", 0), ("pgscan_kswapd", nil), ("oom_kill", nil),
            ],
            virtio: [
                (.swapIn, 0), (.swapOut, 0), (.majorFaults, 2_075), (.minorFaults, 5_342_442),
                (.freeMemory, 221_132 * KiB), (.totalMemory, 990_732 * KiB), (.availableMemory, nil),
                (.diskCaches, 88_279 * 4096), (.htlbPgalloc, nil), (.htlbPgfail, nil), (.oomKills, nil),
                (.allocStalls, 0),  // single pre-split "allocstall"
                (.asyncScans, 0),  // sum of pgscan_kswapd_{normal,high,movable}
                (.directScans, 0),
                (.asyncReclaims, 0),  // sum of pgsteal_kswapd_{normal,high,movable}
                (.directReclaims, 0),
            ],
            present: .exactly([
                .swapIn, .swapOut, .majorFaults, .minorFaults, .freeMemory, .totalMemory, .diskCaches,
                .allocStalls, .asyncScans, .directScans, .asyncReclaims, .directReclaims,
            ]),
            pressure: nil),
        KernelFacts(
            kernel: "linux-3.2.0-ubuntu",
            meminfoCount: 42,
            meminfo: [
                ("MemTotal", 8_133_452 * KiB), ("MemFree", 5_740_368 * KiB), ("SwapTotal", 16_385_272 * KiB),
                ("VmallocChunk", 34_359_614_616 * KiB), ("HugePages_Rsvd", 0), ("MemAvailable", nil),
            ],
            vmstatCount: 96,
            vmstat: [
                ("pgfault", 68_973_334), ("pgmajfault", 5_734), ("nr_file_pages", 458_791), ("numa_hit", 54_195_747),
                ("pgsteal_normal", 0),  // pgsteal not yet split into kswapd/direct
                ("pgsteal_kswapd_normal", nil),
            ],
            virtio: [
                (.swapIn, 0), (.swapOut, 0), (.majorFaults, 5_734), (.minorFaults, 68_973_334),
                (.freeMemory, 5_740_368 * KiB), (.totalMemory, 8_133_452 * KiB), (.availableMemory, nil),
                (.diskCaches, 458_791 * 4096),
                (.diskCaches, (1_379_468 + 455_696 + 0) * KiB),  // Cached + Buffers + SwapCached
                (.htlbPgalloc, 0), (.htlbPgfail, 0), (.oomKills, nil), (.allocStalls, 0), (.asyncScans, 0),
                (.directScans, 0),
                (.asyncReclaims, nil),  // only pgsteal_<zone>, no kswapd/direct split
                (.directReclaims, nil),
            ],
            present: .count(12),
            pressure: nil),
    ]

    @Test(arguments: kernels)
    func meminfo(_ facts: KernelFacts) throws {
        let m = ProcParse.meminfo(try Fixture.bytes(facts.kernel, "meminfo"))
        #expect(m.count == facts.meminfoCount)
        for (key, value) in facts.meminfo { #expect(m[key] == value, "\(key)") }
    }

    @Test(arguments: kernels)
    func vmstat(_ facts: KernelFacts) throws {
        let v = ProcParse.vmstat(try Fixture.bytes(facts.kernel, "vmstat"))
        #expect(v.count == facts.vmstatCount)
        for (key, value) in facts.vmstat { #expect(v[key] == value, "\(key)") }
    }

    @Test(arguments: kernels)
    func pressure(_ facts: KernelFacts) throws {
        #expect(Fixture.exists(facts.kernel, "pressure-memory") == (facts.pressure != nil))
        guard let expected = facts.pressure else { return }  // asserted above: the capture has no PSI file
        let p = ProcParse.pressure(try Fixture.bytes(facts.kernel, "pressure-memory"))
        #expect(p.some == expected.some)
        #expect(p.full == expected.full)
    }

    @Test(arguments: kernels)
    func virtioStats(_ facts: KernelFacts) throws {
        let s = VirtioStats(
            meminfo: try Fixture.bytes(facts.kernel, "meminfo"), vmstat: try Fixture.bytes(facts.kernel, "vmstat"),
            pageSize: 4096)
        for (stat, value) in facts.virtio { #expect(s[stat] == value, "\(stat)") }
        switch facts.present {
        case .count(let count): #expect(s.present.count == count)
        case .exactly(let stats): #expect(s.present.map(\.stat) == stats)
        }
    }

    /// Every captured kernel, including those without hand-read facts: the
    /// essentials parse and agree with each other.
    @Test(arguments: RepoFiles.fixtureKernels())
    func everyCaptureParses(kernel: String) throws {
        let meminfo = try Fixture.bytes(kernel, "meminfo")
        let vmstat = try Fixture.bytes(kernel, "vmstat")
        let m = ProcParse.meminfo(meminfo)
        let v = ProcParse.vmstat(vmstat)
        let total = try #require(m["MemTotal"])
        #expect(total > 0)
        #expect(v["pgfault"] != nil)
        let s = VirtioStats(meminfo: meminfo, vmstat: vmstat, pageSize: 4096)
        #expect(s[.totalMemory] == total)
        #expect(s[.freeMemory] == m["MemFree"])
        #expect(s[.availableMemory] == m["MemAvailable"])
        if Fixture.exists(kernel, "pressure-memory") {
            #expect(ProcParse.pressure(try Fixture.bytes(kernel, "pressure-memory")).some != nil)
        }
    }

    @Test func everyKernelWithFactsIsCaptured() {
        #expect(RepoFiles.fixtureKernels().count >= Self.kernels.count)
        #expect(Set(Self.kernels.map(\.kernel)).isSubset(of: RepoFiles.fixtureKernels()))
    }
}

import Testing

@testable import BalloonStats

// Expected values below are read by hand from the fixture text files.

@Suite("Fixture: Linux 6.18 (this machine)")
struct Linux618Tests {
    let kernel = "linux-6.18-local"

    @Test func meminfo() throws {
        let m = ProcParse.meminfo(try Fixture.bytes(kernel, "meminfo"))
        #expect(m.count == 54)
        #expect(m["MemTotal"] == 24_684_092 * KiB)
        #expect(m["MemFree"] == 23_083_372 * KiB)
        #expect(m["MemAvailable"] == 24_280_972 * KiB)
        #expect(m["Active(anon)"] == 1_512 * KiB)
        #expect(m["VmallocTotal"] == 34_359_738_367 * KiB)
        #expect(m["Balloon"] == 0)
        #expect(m["HugePages_Total"] == 0)  // no unit: as-is
        #expect(m["Hugepagesize"] == 2_048 * KiB)
        #expect(m["DirectMap1G"] == 25_165_824 * KiB)
    }

    @Test func vmstat() throws {
        let v = ProcParse.vmstat(try Fixture.bytes(kernel, "vmstat"))
        #expect(v.count == 192)
        #expect(v["pgfault"] == 4_144_380)
        #expect(v["pgmajfault"] == 1_670)
        #expect(v["nr_file_pages"] == 343_375)
        #expect(v["allocstall_device"] == 0)
        #expect(v["pgscan_kswapd"] == 0)
        #expect(v["pgscan_kswapd_normal"] == nil)
    }

    @Test func pressure() throws {
        let p = ProcParse.pressure(try Fixture.bytes(kernel, "pressure-memory"))
        let zero = PressureLine(avg10: 0, avg60: 0, avg300: 0, total: 0)
        #expect(p.some == zero)
        #expect(p.full == zero)
    }

    @Test func virtioStats() throws {
        let s = VirtioStats(
            meminfo: try Fixture.bytes(kernel, "meminfo"), vmstat: try Fixture.bytes(kernel, "vmstat"), pageSize: 4096)
        #expect(s[.swapIn] == 0)
        #expect(s[.swapOut] == 0)
        #expect(s[.majorFaults] == 1_670)
        #expect(s[.minorFaults] == 4_144_380)
        #expect(s[.freeMemory] == 23_083_372 * KiB)
        #expect(s[.totalMemory] == 24_684_092 * KiB)
        #expect(s[.availableMemory] == 24_280_972 * KiB)
        #expect(s[.diskCaches] == 343_375 * 4096)
        #expect(s[.htlbPgalloc] == 0)
        #expect(s[.htlbPgfail] == 0)
        #expect(s[.oomKills] == 0)
        #expect(s[.allocStalls] == 0)
        #expect(s[.asyncScans] == 0)
        #expect(s[.directScans] == 0)
        #expect(s[.asyncReclaims] == 0)
        #expect(s[.directReclaims] == 0)
        #expect(s.present.count == 16)
        // NR_FILE_PAGES is Cached + Buffers + SwapCached (1350408 + 23092 + 0 kB).
        #expect(s[.diskCaches] == (1_350_408 + 23_092 + 0) * KiB)
    }
}

@Suite("Fixture: Linux 4.18 (RHEL 8 sosreport)")
struct Linux418Tests {
    let kernel = "linux-4.18-rhel8"

    @Test func meminfo() throws {
        let m = ProcParse.meminfo(try Fixture.bytes(kernel, "meminfo"))
        #expect(m.count == 47)
        #expect(m["MemTotal"] == 8_164_548 * KiB)
        #expect(m["MemFree"] == 851_960 * KiB)
        #expect(m["MemAvailable"] == 1_950_080 * KiB)
        #expect(m["Cached"] == 1_235_532 * KiB)
        #expect(m["AnonHugePages"] == 141_312 * KiB)
        #expect(m["HugePages_Free"] == 0)
        #expect(m["Balloon"] == nil)
    }

    @Test func vmstat() throws {
        let v = ProcParse.vmstat(try Fixture.bytes(kernel, "vmstat"))
        #expect(v.count == 133)
        #expect(v["pgfault"] == 1_677_493)
        #expect(v["pgmajfault"] == 2_422)
        #expect(v["nr_file_pages"] == 309_959)
        #expect(v["thp_fault_alloc"] == 547)
        #expect(v["allocstall_normal"] == 0)
        #expect(v["allocstall_device"] == nil)  // no ZONE_DEVICE in this config
    }

    @Test func noPressureFile() {
        // 4.18 predates PSI being on by default in RHEL 8; the sosreport has none.
        #expect(!Fixture.exists(kernel, "pressure-memory"))
    }

    @Test func virtioStats() throws {
        let s = VirtioStats(
            meminfo: try Fixture.bytes(kernel, "meminfo"), vmstat: try Fixture.bytes(kernel, "vmstat"), pageSize: 4096)
        #expect(s[.swapIn] == 0)
        #expect(s[.swapOut] == 0)
        #expect(s[.majorFaults] == 2_422)
        #expect(s[.minorFaults] == 1_677_493)
        #expect(s[.freeMemory] == 851_960 * KiB)
        #expect(s[.totalMemory] == 8_164_548 * KiB)
        #expect(s[.availableMemory] == 1_950_080 * KiB)
        #expect(s[.diskCaches] == 309_959 * 4096)
        #expect(s[.diskCaches] == (1_235_532 + 4_304 + 0) * KiB)  // Cached + Buffers + SwapCached
        #expect(s[.htlbPgalloc] == 0)
        #expect(s[.htlbPgfail] == 0)
        #expect(s[.oomKills] == 0)
        #expect(s[.allocStalls] == 0)
        #expect(s[.asyncScans] == 0)
        #expect(s[.directScans] == 0)
        #expect(s[.asyncReclaims] == 0)
        #expect(s[.directReclaims] == 0)
        #expect(s.present.count == 16)
    }
}

@Suite("Fixture: Linux 3.4.5 (Android, ARM, HighMem)")
struct Linux345Tests {
    let kernel = "linux-3.4.5-android"

    @Test func meminfo() throws {
        let m = ProcParse.meminfo(try Fixture.bytes(kernel, "meminfo"))
        #expect(m.count == 37)
        #expect(m["MemTotal"] == 990_732 * KiB)
        #expect(m["MemFree"] == 221_132 * KiB)
        #expect(m["HighTotal"] == 521_216 * KiB)
        #expect(m["Committed_AS"] == 5_714_904 * KiB)
        #expect(m["MemAvailable"] == nil)  // added in 3.14
        #expect(m["HugePages_Total"] == nil)  // no CONFIG_HUGETLB_PAGE
    }

    @Test func vmstat() throws {
        let v = ProcParse.vmstat(try Fixture.bytes(kernel, "vmstat"))
        #expect(v.count == 73)
        #expect(v["pgfault"] == 5_342_442)
        #expect(v["pgmajfault"] == 2_075)
        #expect(v["nr_file_pages"] == 88_279)
        #expect(v["pgalloc_high"] == 347_327)
        #expect(v["allocstall"] == 0)
        #expect(v["pgscan_kswapd_high"] == 0)
        #expect(v["pgscan_kswapd"] == nil)
        #expect(v["oom_kill"] == nil)
    }

    @Test func virtioStats() throws {
        let s = VirtioStats(
            meminfo: try Fixture.bytes(kernel, "meminfo"), vmstat: try Fixture.bytes(kernel, "vmstat"), pageSize: 4096)
        #expect(s[.swapIn] == 0)
        #expect(s[.swapOut] == 0)
        #expect(s[.majorFaults] == 2_075)
        #expect(s[.minorFaults] == 5_342_442)
        #expect(s[.freeMemory] == 221_132 * KiB)
        #expect(s[.totalMemory] == 990_732 * KiB)
        #expect(s[.availableMemory] == nil)
        #expect(s[.diskCaches] == 88_279 * 4096)
        #expect(s[.htlbPgalloc] == nil)
        #expect(s[.htlbPgfail] == nil)
        #expect(s[.oomKills] == nil)
        #expect(s[.allocStalls] == 0)  // single pre-split "allocstall"
        #expect(s[.asyncScans] == 0)  // sum of pgscan_kswapd_{normal,high,movable}
        #expect(s[.directScans] == 0)
        #expect(s[.asyncReclaims] == 0)  // sum of pgsteal_kswapd_{normal,high,movable}
        #expect(s[.directReclaims] == 0)
        #expect(s.present.map(\.stat) == [
            .swapIn, .swapOut, .majorFaults, .minorFaults, .freeMemory, .totalMemory, .diskCaches,
            .allocStalls, .asyncScans, .directScans, .asyncReclaims, .directReclaims,
        ])
    }
}

@Suite("Fixture: Linux 3.2.0 (Ubuntu 12.04)")
struct Linux320Tests {
    let kernel = "linux-3.2.0-ubuntu"

    @Test func meminfo() throws {
        let m = ProcParse.meminfo(try Fixture.bytes(kernel, "meminfo"))
        #expect(m.count == 42)
        #expect(m["MemTotal"] == 8_133_452 * KiB)
        #expect(m["MemFree"] == 5_740_368 * KiB)
        #expect(m["SwapTotal"] == 16_385_272 * KiB)
        #expect(m["VmallocChunk"] == 34_359_614_616 * KiB)
        #expect(m["HugePages_Rsvd"] == 0)
        #expect(m["MemAvailable"] == nil)
    }

    @Test func vmstat() throws {
        let v = ProcParse.vmstat(try Fixture.bytes(kernel, "vmstat"))
        #expect(v.count == 96)
        #expect(v["pgfault"] == 68_973_334)
        #expect(v["pgmajfault"] == 5_734)
        #expect(v["nr_file_pages"] == 458_791)
        #expect(v["numa_hit"] == 54_195_747)
        #expect(v["pgsteal_normal"] == 0)  // pgsteal not yet split into kswapd/direct
        #expect(v["pgsteal_kswapd_normal"] == nil)
    }

    @Test func virtioStats() throws {
        let s = VirtioStats(
            meminfo: try Fixture.bytes(kernel, "meminfo"), vmstat: try Fixture.bytes(kernel, "vmstat"), pageSize: 4096)
        #expect(s[.swapIn] == 0)
        #expect(s[.swapOut] == 0)
        #expect(s[.majorFaults] == 5_734)
        #expect(s[.minorFaults] == 68_973_334)
        #expect(s[.freeMemory] == 5_740_368 * KiB)
        #expect(s[.totalMemory] == 8_133_452 * KiB)
        #expect(s[.availableMemory] == nil)
        #expect(s[.diskCaches] == 458_791 * 4096)
        #expect(s[.diskCaches] == (1_379_468 + 455_696 + 0) * KiB)  // Cached + Buffers + SwapCached
        #expect(s[.htlbPgalloc] == 0)
        #expect(s[.htlbPgfail] == 0)
        #expect(s[.oomKills] == nil)
        #expect(s[.allocStalls] == 0)
        #expect(s[.asyncScans] == 0)
        #expect(s[.directScans] == 0)
        #expect(s[.asyncReclaims] == nil)  // only pgsteal_<zone>, no kswapd/direct split
        #expect(s[.directReclaims] == nil)
        #expect(s.present.count == 12)
    }
}

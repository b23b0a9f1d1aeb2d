// SPDX-License-Identifier: Apache-2.0
import Glibc
import Testing
@testable import BalloonDaemon
import BalloonSystem

/// `Cushion=auto` reads the zones' high watermarks from /proc/zoneinfo.
@Suite struct CushionTests {
    @Test func sumsEveryZonesHighWatermarkAndNothingElse() {
        // As Linux 6.1 prints it (trimmed): per-cpu pagesets have "high:" too.
        let zoneinfo = """
            Node 0, zone      DMA
              pages free     3840
                    boost    0
                    min      176
                    low      220
                    high     264
                    spanned  4095
              pagesets
                cpu: 0
                          count: 0
                          high:  0
            Node 0, zone    DMA32
              pages free     180000
                    boost    0
                    min      11088
                    low      13860
                    high     16632
                    spanned  258048
            """
        #expect(FreeMemoryWatch.highWatermarkPages(Array(zoneinfo.utf8)) == 264 + 16632)
    }

    @Test func theLiveFileHasWatermarks() throws {
        let text = try String(contentsOfFile: "/proc/zoneinfo", encoding: .utf8)
        #expect(FreeMemoryWatch.highWatermarkPages(Array(text.utf8)) > 0)
    }
}

/// The mode's MemFree samples: sysinfo(2) on the running kernel, only that
/// line of /proc/meminfo for a fixture.
@Suite struct MemFreeSampleTests {
    @Test func readsMemFreeAsTheFullParseDoes() throws {
        let sampler = try MemorySampler()
        let free = try #require(sampler.memFree())
        #expect(free.distance(to: try SystemMemory.freeBytes()).magnitude < 64 << 20)
        // The real /proc/meminfo: same value as the full parse within what
        // the system allocates or frees between the two reads.
        let parsed = try #require(sampler.meminfoValues()["MemFree"])
        #expect(free % 1024 == 0)
        #expect(free.distance(to: parsed).magnitude < 64 << 20)
    }

    @Test func aMeminfoWithoutMemFreeGivesNil() throws {
        let dir = "/tmp/balloond-memfree-\(getpid())"
        mkdir(dir, 0o700)
        defer { for f in ["meminfo", "vmstat"] { unlink("\(dir)/\(f)") }; rmdir(dir) }
        for (name, text) in [("meminfo", "MemTotal:       1000 kB\nMemFreeish:     5 kB\n"), ("vmstat", "nr_free_pages 1\n")] {
            let f = fopen("\(dir)/\(name)", "w")
            fputs(text, f)
            fclose(f)
        }
        let sampler = try MemorySampler(procRoot: dir)
        #expect(sampler.memFree() == nil)
        #expect(sampler.meminfoValues()["MemTotal"] == 1000 * 1024)
        // Several keys from one read, in the order asked, nil for an absent one.
        #expect(sampler.meminfoValues(["MemFree", "MemTotal"]) == [nil, 1000 * 1024])
    }
}

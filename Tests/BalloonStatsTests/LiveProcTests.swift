// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing

@testable import BalloonStats

/// Reads the live /proc files of the machine running the tests and compares
/// the parsers with an independent, simple line split of a second read.
@Suite("Live /proc")
struct LiveProcTests {
    static func read(_ path: String) throws -> [UInt8] {
        let handle = try #require(FileHandle(forReadingAtPath: path), "cannot open \(path)")
        defer { try? handle.close() }
        return [UInt8](handle.readDataToEndOfFile())
    }

    /// The independent parser: String splitting, nothing shared with ProcParse.
    static func simpleSplit(_ bytes: [UInt8], meminfo: Bool) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, var value = UInt64(parts[1]) else { continue }
            var key = String(parts[0])
            if meminfo {
                guard key.hasSuffix(":") else { continue }
                key.removeLast()
                if parts.count == 3 && parts[2] == "kB" { value *= 1024 }
            }
            out[key] = value
        }
        return out
    }

    @Test func meminfo() throws {
        let ours = ProcParse.meminfo(try Self.read("/proc/meminfo"))
        let theirs = Self.simpleSplit(try Self.read("/proc/meminfo"), meminfo: true)
        #expect(!ours.isEmpty)
        #expect(Set(ours.keys) == Set(theirs.keys))
        #expect(ours["MemTotal"] != nil)
        #expect(ours["MemTotal"] == theirs["MemTotal"])
        let a = try #require(ours["MemFree"]), b = try #require(theirs["MemFree"])
        #expect((a > b ? a - b : b - a) < 64 * MiB, "MemFree moved by more than 64 MiB between two reads")
        for key in ["HugePages_Total", "Hugepagesize", "SwapTotal", "VmallocTotal"] {
            #expect(ours[key] == theirs[key], "\(key)")
        }
    }

    @Test func vmstatMonotonicCounters() throws {
        let ours = ProcParse.vmstat(try Self.read("/proc/vmstat"))
        let theirs = Self.simpleSplit(try Self.read("/proc/vmstat"), meminfo: false)
        #expect(Set(ours.keys) == Set(theirs.keys))
        #expect(ours["pgfault"] != nil)
        let monotonic = [
            "pgfault", "pgmajfault", "pswpin", "pswpout", "pgpgin", "pgpgout", "pgfree", "pgactivate",
            "oom_kill", "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct",
            "htlb_buddy_alloc_success", "htlb_buddy_alloc_fail",
        ]
        for key in monotonic {
            guard let first = ours[key] else {
                #expect(theirs[key] == nil, "\(key) absent in one read only")
                continue
            }
            let second = try #require(theirs[key], "\(key)")
            #expect(second >= first, "\(key) went backwards: \(first) -> \(second)")
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/proc/pressure/memory"), "this kernel has no PSI (/proc/pressure/memory)"))
    func pressure() throws {
        let ours = ProcParse.pressure(try Self.read("/proc/pressure/memory"))
        let text = String(decoding: try Self.read("/proc/pressure/memory"), as: UTF8.self)
        let some = try #require(ours.some)
        let full = try #require(ours.full)
        for (name, line) in [("some", some), ("full", full)] {
            for avg in [line.avg10, line.avg60, line.avg300] { #expect(avg >= 0 && avg <= 100) }
            let row = try #require(text.split(separator: "\n").first { $0.hasPrefix(name + " ") })
            let totalField = try #require(row.split(separator: " ").first { $0.hasPrefix("total=") })
            let total = try #require(UInt64(totalField.dropFirst("total=".count)))
            #expect(total >= line.total, "\(name) total went backwards")
        }
    }

    @Test func virtioStatsFromLiveFiles() throws {
        let meminfoBytes = try Self.read("/proc/meminfo")
        let vmstatBytes = try Self.read("/proc/vmstat")
        let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let s = VirtioStats(meminfo: meminfoBytes, vmstat: vmstatBytes, pageSize: pageSize)
        let m = Self.simpleSplit(meminfoBytes, meminfo: true)
        let v = Self.simpleSplit(vmstatBytes, meminfo: false)
        #expect(s[.totalMemory] == m["MemTotal"])
        #expect(s[.freeMemory] == m["MemFree"])
        #expect(s[.availableMemory] == m["MemAvailable"])
        #expect(s[.minorFaults] == v["pgfault"])
        #expect(s[.diskCaches] == v["nr_file_pages"].map { $0 * pageSize })
        // Every stat is present exactly when its source counter is.
        #expect((s[.oomKills] != nil) == (v["oom_kill"] != nil))
        #expect((s[.htlbPgalloc] != nil) == (v["htlb_buddy_alloc_success"] != nil))
        if v["pgscan_kswapd"] != nil {
            #expect(s[.asyncScans] == v["pgscan_kswapd"]! * pageSize)
        }
    }
}

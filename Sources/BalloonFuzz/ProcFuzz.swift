// SPDX-License-Identifier: Apache-2.0
import BalloonStats

/// The /proc parsers on truncated, oversized and garbage files. Invariants:
/// no trap; the single-key readers the free-memory mode samples with agree
/// with the dictionaries, for every key present and for the keys the daemon
/// reads; `kB` values scale to bytes, saturating.
public enum ProcFuzz {
    static let meminfoKeys = ["MemTotal", "MemFree", "MemAvailable", "Cached", "SwapFree", "HugePages_Total", "Mlocked"]
    static let vmstatKeys = ["pgmajfault", "pgfault", "pswpin", "pswpout", "oom_kill", "allocstall_normal", "pgscan_kswapd"]

    /// The daemon's keys and up to 16 of those present: each lookup scans
    /// the whole file, so all of a 200-line vmstat would be quadratic.
    static func sample(_ present: Dictionary<String, UInt64>.Keys, _ wanted: [String]) -> Set<String> {
        Set(present.sorted().prefix(16)).union(wanted)
    }

    public static func run(_ data: UnsafeRawBufferPointer) {
        let meminfo = ProcParse.meminfo(data)
        precondition(ProcParse.meminfo(Array(data)) == meminfo, "meminfo: raw and collection parses differ")
        for key in sample(meminfo.keys, meminfoKeys) {
            precondition(ProcParse.meminfo(data, key: key) == meminfo[key], "meminfo \(key): single-key reader disagrees")
        }
        let vmstat = ProcParse.vmstat(data)
        precondition(ProcParse.vmstat(Array(data)) == vmstat, "vmstat: raw and collection parses differ")
        for key in sample(vmstat.keys, vmstatKeys) {
            precondition(ProcParse.vmstat(data, key: key) == vmstat[key], "vmstat \(key): single-key reader disagrees")
        }
        let pressure = ProcParse.pressure(data)
        precondition(ProcParse.pressure(Array(data)) == pressure, "pressure: raw and collection parses differ")
        for line in [pressure.some, pressure.full].compactMap({ $0 }) {
            precondition([line.avg10, line.avg60, line.avg300].allSatisfy { $0.isFinite && $0 >= 0 }, "pressure average \(line)")
        }
    }
}

// `make bench`: measures balloond against its targets (issue 2) and writes
// bench/results.json and bench/results.md. Not installed; not part of `make test`.
import BalloonHost
import BalloonProtocol
import Foundation
import Glibc

let MiB: UInt64 = 1 << 20
let GiB: UInt64 = 1 << 30

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func argument(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

guard let balloondPath = argument("--balloond"), let baselinePath = argument("--baseline"),
    let outDir = argument("--out")
else {
    FileHandle.standardError.write("usage: balloon-bench --balloond PATH --baseline PATH --out DIR [--runs N] [--idle-seconds S]\n".data(using: .utf8)!)
    exit(2)
}
let runs = Int(argument("--runs") ?? "5") ?? 5
let idleSeconds = Double(argument("--idle-seconds") ?? "30") ?? 30

func log(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}

/// A balloond process on a unix socket in a temporary directory.
final class Daemon {
    let process = Process()
    let dir: String
    var socket: String { dir + "/b.sock" }

    init(thp: Bool, executable: String) throws {
        dir = NSTemporaryDirectory() + "balloond-bench-\(getpid())-\(thp)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let config = """
            [Channel]
            Listen=unix:\(dir)/b.sock
            [Balloon]
            ChunkSize=64M
            TransparentHugePages=\(thp ? "yes" : "no")
            MemAvailableFloor=256M
            [Log]
            Level=warning

            """
        try config.write(toFile: dir + "/b.conf", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--config", dir + "/b.conf"]
        try process.run()
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: socket) { usleep(10_000) }
        guard FileManager.default.fileExists(atPath: socket) else { throw BenchError("balloond did not start") }
    }

    var pid: Int32 { process.processIdentifier }

    func session() throws -> GuestSession { try GuestSession.open(.unix(path: socket), timeout: .seconds(120)) }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// The balloon holder processes (children of the daemon).
    var holders: [Int32] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// What the balloon has locked: the daemon's VmLck and its holders'.
    var lockedTotal: UInt64 { ([pid] + holders).reduce(0) { $0 + Self.status("VmLck", pid: $1) } }

    /// The holders' own memory: private dirty pages beyond their chunk
    /// (copy-on-write pages still shared with the daemon are not theirs),
    /// and page tables.
    var holderOverhead: UInt64 {
        holders.reduce(0) { sum, h in
            let text = (try? String(contentsOfFile: "/proc/\(h)/smaps_rollup", encoding: .utf8)) ?? ""
            let dirty = text.split(separator: "\n").first { $0.hasPrefix("Private_Dirty:") }
                .flatMap { UInt64($0.split(separator: " ", omittingEmptySubsequences: true)[1]) }.map { $0 * 1024 } ?? 0
            let locked = Self.status("VmLck", pid: h)
            return sum + (dirty > locked ? dirty - locked : 0) + Self.status("VmPTE", pid: h)
        }
    }

    /// CPU time in seconds from /proc/PID/schedstat (nanosecond resolution).
    func cpuSeconds() -> Double {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/schedstat", encoding: .utf8)) ?? "0"
        return Double(text.split(separator: " ")[0])! / 1e9
    }

    func status(_ key: String) -> UInt64 { Self.status(key, pid: pid) }

    static func status(_ key: String, pid: Int32) -> UInt64 {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return UInt64(line.split(separator: " ", omittingEmptySubsequences: true)[1])! * 1024
        }
        return 0
    }
}

/// Sets a target and waits for TARGET_REACHED; returns the seconds it took.
func move(_ session: GuestSession, to target: UInt64) throws -> Double {
    session.discardQueuedEvents()
    let t0 = now()
    let reply = try session.setTarget(target)
    if reply.actual == target { return now() - t0 }
    while let event = try session.nextEvent(timeout: .seconds(120)) {
        switch try? GuestEvent(event) {
        case let .targetReached(p)? where p.target == target: return now() - t0
        case let .targetUnreachable(_, reason)?: throw BenchError("target \(target) unreachable: \(reason)")
        default: continue
        }
    }
    throw BenchError("no TARGET_REACHED")
}

func baseline(thp: Bool) throws -> (inflate: Double, deflate: Double) {
    let p = Process()
    let out = Pipe()
    p.executableURL = URL(fileURLWithPath: baselinePath)
    p.arguments = [String(GiB), String(64 * MiB), thp ? "1" : "0"]
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let json = try JSON.parse(Array(data))
    return (json["inflate_s"]!.double!, json["deflate_s"]!.double!)
}

var results: [(String, JSON)] = []
var rows: [(metric: String, value: String, target: String, pass: Bool)] = []

// 1. Inflate and deflate 1 GiB, THP on and off, alternating with the C
// program so both meet the same machine state (the hypervisor's own free-page
// reporting makes first touches of long-free memory slow; see the notes).
for thp in [true, false] {
    let daemon = try Daemon(thp: thp, executable: balloondPath)
    let session = try daemon.session()
    var cInflate: [Double] = [], cDeflate: [Double] = [], dInflate: [Double] = [], dDeflate: [Double] = []
    for run in 0..<runs {
        // Alternate who goes first.
        let order = run % 2 == 0 ? ["c", "d"] : ["d", "c"]
        for who in order {
            if who == "c" {
                let (i, d) = try baseline(thp: thp)
                cInflate.append(i); cDeflate.append(d)
            } else {
                dInflate.append(try move(session, to: GiB))
                guard daemon.lockedTotal == GiB else { throw BenchError("the balloon's VmLck is not 1 GiB after inflating") }
                dDeflate.append(try move(session, to: 0))
            }
        }
        log("thp=\(thp) run \(run): C \(String(format: "%.3f", cInflate.last!)) s, balloond \(String(format: "%.3f", dInflate.last!)) s")
    }
    session.close()
    daemon.stop()
    let name = thp ? "thp" : "4k"
    let rateC = 1024 / median(cInflate), rateD = 1024 / median(dInflate)
    results.append(("inflate_1gib_\(name)", [
        "balloond_seconds": .array(dInflate.map { .double($0) }), "c_seconds": .array(cInflate.map { .double($0) }),
        "balloond_median_mib_s": .double(rateD), "c_median_mib_s": .double(rateC), "ratio": .double(rateD / rateC),
    ]))
    results.append(("deflate_1gib_\(name)", [
        "balloond_seconds": .array(dDeflate.map { .double($0) }), "c_seconds": .array(cDeflate.map { .double($0) }),
        "balloond_median_ms": .double(median(dDeflate) * 1000), "c_median_ms": .double(median(cDeflate) * 1000),
    ]))
    rows.append(("inflate 1 GiB, \(thp ? "THP" : "4 KiB pages") (median of \(runs))",
        String(format: "%.0f MiB/s (C: %.0f MiB/s) = %.2f×", rateD, rateC, rateD / rateC), "≥ 0.9× C", rateD / rateC >= 0.9))
    rows.append(("deflate 1 GiB, \(thp ? "THP" : "4 KiB pages") (median of \(runs))",
        String(format: "%.1f ms (C: %.1f ms)", median(dDeflate) * 1000, median(cDeflate) * 1000), "≤ 200 ms", median(dDeflate) <= 0.2))
}

// 2. stats latency over 10,000 requests on the unix channel.
do {
    let daemon = try Daemon(thp: true, executable: balloondPath)
    let session = try daemon.session()
    for _ in 0..<500 { _ = try session.call(.stats) }
    var latencies: [Double] = []
    latencies.reserveCapacity(10_000)
    for _ in 0..<10_000 {
        let t0 = now()
        _ = try session.call(.stats)
        latencies.append(now() - t0)
    }
    latencies.sort()
    let p50 = percentile(latencies, 0.5) * 1e6, p99 = percentile(latencies, 0.99) * 1e6, mx = latencies.last! * 1e6
    results.append(("stats_latency_us", ["requests": 10_000, "p50": .double(p50), "p99": .double(p99), "max": .double(mx)]))
    rows.append(("stats request latency, 10,000 requests", String(format: "p50 %.0f µs, p99 %.0f µs (max %.0f µs)", p50, p99, mx), "p99 ≤ 1 ms", p99 <= 1000))

    // 3. Idle: CPU and RSS over `idleSeconds`, empty and with 512 MiB.
    for size in [UInt64(0), 512 * MiB] {
        _ = try move(session, to: size)
        usleep(500_000)
        let c0 = daemon.cpuSeconds(), t0 = now()
        usleep(UInt32(idleSeconds * 1e6))
        let cpu = daemon.cpuSeconds() - c0, elapsed = now() - t0
        let rss = daemon.status("VmRSS"), locked = daemon.status("VmLck")
        let rssExcl = Double(rss - min(rss, locked)) / Double(MiB)
        let percent = cpu / elapsed * 100
        let label = size == 0 ? "empty" : "512 MiB"
        results.append(("idle_\(size == 0 ? "empty" : "512mib")", [
            "seconds": .double(elapsed), "cpu_seconds": .double(cpu), "cpu_percent": .double(percent),
            "vmrss_bytes": .uint(rss), "vmlck_bytes": .uint(locked), "rss_excluding_balloon_mib": .double(rssExcl),
        ]))
        rows.append(("idle \(Int(idleSeconds)) s, balloon \(label): CPU", String(format: "%.4f%% (%.1f ms)", percent, cpu * 1000), "≤ 0.05%", percent <= 0.05))
        rows.append(("idle \(Int(idleSeconds)) s, balloon \(label): RSS excluding balloon", String(format: "%.1f MiB", rssExcl), "≤ 12 MiB", rssExcl <= 12))
        if size > 0 {
            let holders = daemon.holders.count, overhead = Double(daemon.holderOverhead) / Double(MiB)
            results.append(("holders_512mib", [
                "count": .int(Int64(holders)), "private_overhead_mib": .double(overhead),
                "locked_bytes": .uint(daemon.lockedTotal),
            ]))
            rows.append(("balloon \(label): holder processes' own memory (info)",
                String(format: "%d holders, %.2f MiB (private dirty beyond the chunk + page tables)", holders, overhead), "—", true))
        }
    }
    session.close()
    daemon.stop()
}

// Machine facts, so numbers can be compared across runs.
let kernelRelease = { () -> String in
    var u = utsname()
    uname(&u)
    return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
}()
let thpMode = (try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8))?
    .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
let date = ISO8601DateFormatter().string(from: Date())
let machine: JSON = ["kernel": .string(kernelRelease), "cpus": .int(Int64(ProcessInfo.processInfo.activeProcessorCount)),
                     "thp": .string(thpMode), "date": .string(date), "runs": .int(Int64(runs))]
let document = JSON.object([("machine", machine)] + results + [("pass", .bool(rows.allSatisfy(\.pass)))])
try (document.serialized() + "\n").write(toFile: outDir + "/results.json", atomically: true, encoding: .utf8)

var table = "# balloond benchmark (`make bench`)\n\n\(date), kernel \(kernelRelease), \(ProcessInfo.processInfo.activeProcessorCount) CPUs, THP `\(thpMode)`\n\n"
table += "| measure | result | target | |\n|---|---|---|---|\n"
for row in rows { table += "| \(row.metric) | \(row.value) | \(row.target) | \(row.pass ? "pass" : "**FAIL**") |\n" }
try table.write(toFile: outDir + "/results.md", atomically: true, encoding: .utf8)
print(table)

// SPDX-License-Identifier: Apache-2.0
// `make bench`: measures balloond against its targets (issue 2) and writes
// bench/results.json and bench/results.md with their provenance. Prints pass or
// FAIL per goal and exits 1 on a miss. Not installed; not part of `make test`.
import BalloonHost
import BalloonProtocol
import BalloonSystem
import Foundation
import Glibc

func argument(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

guard let balloondPath = argument("--balloond"), let baselinePath = argument("--baseline"),
    let outDir = argument("--out")
else {
    log("usage: balloon-bench --balloond PATH --baseline PATH --out DIR [--runs N] [--idle-seconds S] [--inflate-mib N] [--idle-balloon-mib N] [--commit TEXT]")
    exit(2)
}
let runs = Int(argument("--runs") ?? "5") ?? 5
let idleSeconds = Double(argument("--idle-seconds") ?? "30") ?? 30
// Smaller sizes check the harness on a shared machine; the goals are for the defaults.
let inflateBytes = (UInt64(argument("--inflate-mib") ?? "1024") ?? 1024) * MiB
let idleBalloon = (UInt64(argument("--idle-balloon-mib") ?? "512") ?? 512) * MiB
var provenance = Provenance(commit: argument("--commit") ?? "unknown")

/// The C reference (bench/mlock_baseline.c) for `inflateBytes` in 64 MiB chunks.
func baseline(thp: Bool, mode: String) throws -> (inflate: Double, deflate: Double) {
    guard let text = output(of: baselinePath, [String(inflateBytes), String(64 * MiB), thp ? "1" : "0", mode]) else {
        throw BenchError("\(baselinePath) failed")
    }
    let json = try JSON.parse(Array(text.utf8))
    guard let i = json["inflate_s"]?.double, let d = json["deflate_s"]?.double else { throw BenchError("baseline printed \(text)") }
    return (i, d)
}

var results: [(String, JSON)] = []
var rows: [(metric: String, value: String, target: String, pass: Bool?)] = []

// 1. Inflate and deflate 1 GiB, THP on and off. balloond, the C baseline doing
// what balloond does (mlock populates) and C with a touch pass first take
// turns; who goes first rotates with the run (and differs between the THP
// blocks), after one discarded warm-up round, so neither side always meets
// the machine cold (first touches of long-free memory are slow on a VM whose
// host reclaims free pages).
for (block, thp) in [true, false].enumerated() {
    let daemon = try BenchDaemon(thp: thp, executable: balloondPath)
    provenance.daemonSettings.append(("THP \(thp ? "yes" : "no")",
        output(of: balloondPath, ["--config", daemon.configPath, "--dump-config"]) ?? "(--dump-config failed)"))
    let session = try daemon.session()
    var seconds: [String: (inflate: [Double], deflate: [Double])] = ["balloond": ([], []), "c": ([], []), "c-touch": ([], [])]
    let players = ["c", "balloond", "c-touch"]
    for run in -1..<runs {
        let shift = (max(run, 0) + block) % players.count
        let order = Array(players[shift...] + players[..<shift])
        var line: [String] = []
        for who in order {
            let (i, d): (Double, Double)
            if who == "balloond" {
                i = try move(session, to: inflateBytes)
                guard daemon.lockedTotal == inflateBytes else { throw BenchError("the balloon's VmLck is not \(inflateBytes / MiB) MiB after inflating") }
                d = try move(session, to: 0)
            } else {
                (i, d) = try baseline(thp: thp, mode: who == "c" ? "mlock" : "touch")
            }
            line.append("\(who) \(String(format: "%.3f", i)) s")
            if run >= 0 { seconds[who]!.inflate.append(i); seconds[who]!.deflate.append(d) }
        }
        log("thp=\(thp) \(run < 0 ? "warm-up" : "run \(run)"): " + line.joined(separator: ", "))
    }
    session.close()
    daemon.stop()
    let name = thp ? "thp" : "4k", pages = thp ? "THP" : "4 KiB pages"
    let dI = Spread(values: seconds["balloond"]!.inflate), cI = Spread(values: seconds["c"]!.inflate)
    let tI = Spread(values: seconds["c-touch"]!.inflate)
    let dD = Spread(values: seconds["balloond"]!.deflate), cD = Spread(values: seconds["c"]!.deflate)
    let ratio = cI.median / dI.median  // rate ratio: balloond MiB/s over C MiB/s
    results.append(("inflate_\(name)", [
        "balloond_seconds": dI.json, "c_mlock_seconds": cI.json, "c_touch_mlock_seconds": tI.json,
        "balloond_median_mib_s": .double(Double(inflateBytes / MiB) / dI.median), "c_median_mib_s": .double(Double(inflateBytes / MiB) / cI.median),
        "ratio_of_medians": .double(ratio),
    ]))
    results.append(("deflate_\(name)", [
        "balloond_seconds": dD.json, "c_mlock_seconds": cD.json, "c_touch_mlock_seconds": Spread(values: seconds["c-touch"]!.deflate).json,
    ]))
    rows.append(("inflate \(inflateBytes / MiB) MiB, \(pages): s, min / median / max of \(runs)",
        "balloond \(dI.text(1, "%.3f")); C mlock \(cI.text(1, "%.3f")); median rate \(String(format: "%.0f vs %.0f MiB/s = %.2f×", Double(inflateBytes / MiB) / dI.median, Double(inflateBytes / MiB) / cI.median, ratio))",
        "≥ 0.9× C (medians)", ratio >= 0.9))
    rows.append(("inflate \(inflateBytes / MiB) MiB, \(pages): C touch + mlock (info)", "\(tI.text(1, "%.3f")) s", "—", nil))
    rows.append(("deflate \(inflateBytes / MiB) MiB, \(pages): ms, min / median / max of \(runs)",
        "balloond \(dD.text(1000, "%.1f")); C \(cD.text(1000, "%.1f"))", "≤ 200 ms (median)", dD.median <= 0.2))
}

// 2. stats latency over 10,000 requests on the unix channel.
do {
    let daemon = try BenchDaemon(thp: true, executable: balloondPath)
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
    rows.append(("stats request latency, 10,000 requests", String(format: "p50 %.0f µs, p99 %.0f µs, max %.0f µs", p50, p99, mx), "p99 ≤ 1 ms", p99 <= 1000))

    // 3. Idle: CPU and memory over `idleSeconds`, empty and with 512 MiB. The
    // memory goal counts the daemon's RSS and the holders' own memory (not the
    // chunks they lock).
    for size in [UInt64(0), idleBalloon] {
        _ = try move(session, to: size)
        _ = waitUntil(seconds: 5) { daemon.lockedTotal == size }
        let c0 = daemon.cpuSeconds(), t0 = now()
        HostIO.sleep(.milliseconds(Int64(idleSeconds * 1000)))
        let cpu = daemon.cpuSeconds() - c0, elapsed = now() - t0
        let rss = daemon.status("VmRSS"), locked = daemon.status("VmLck")
        let daemonOwn = rss - min(rss, locked), holdersOwn = daemon.holderOverhead, holders = daemon.holders.count
        let total = Double(daemonOwn + holdersOwn) / Double(MiB), pss = Double(daemon.pssExcludingBalloon) / Double(MiB)
        let percent = cpu / elapsed * 100
        let label = size == 0 ? "empty" : "\(size / MiB) MiB"
        results.append(("idle_\(size == 0 ? "empty" : "\(size / MiB)mib")", [
            "seconds": .double(elapsed), "cpu_seconds": .double(cpu), "cpu_percent": .double(percent),
            "daemon_vmrss_bytes": .uint(rss), "daemon_vmlck_bytes": .uint(locked), "daemon_vmpte_bytes": .uint(daemon.status("VmPTE")),
            "holders": .int(Int64(holders)), "holders_own_bytes": .uint(holdersOwn), "balloon_locked_bytes": .uint(daemon.lockedTotal),
            "daemon_plus_holders_excluding_balloon_mib": .double(total), "pss_excluding_balloon_mib": .double(pss),
        ]))
        rows.append(("idle \(Int(idleSeconds)) s, balloon \(label): CPU", String(format: "%.4f%% (%.1f ms)", percent, cpu * 1000), "≤ 0.05%", percent <= 0.05))
        rows.append(("idle, balloon \(label): memory excluding the balloon (daemon RSS + holders' own)",
            String(format: "%.2f MiB = daemon %.2f + %d holders %.2f (PSS view: %.2f)", total, Double(daemonOwn) / Double(MiB), holders,
                   Double(holdersOwn) / Double(MiB), pss),
            "≤ 12 MiB", total <= 12))
    }
    session.close()
    daemon.stop()
}

let pass = rows.allSatisfy { $0.pass != false }
let document = JSON.object([("provenance", provenance.json), ("runs", .int(Int64(runs))), ("inflate_bytes", .uint(inflateBytes))] + results + [("pass", .bool(pass))])
try (document.serialized() + "\n").write(toFile: outDir + "/results.json", atomically: false, encoding: .utf8)

var table = "# balloond benchmark (`make bench`)\n\n" + provenance.markdown + "\n"
table += "| measure | result | target | |\n|---|---|---|---|\n"
for row in rows {
    let verdict = row.pass.map { $0 ? "pass" : "**FAIL**" } ?? "info"
    table += "| \(row.metric) | \(row.value) | \(row.target) | \(verdict) |\n"
}
try table.write(toFile: outDir + "/results.md", atomically: false, encoding: .utf8)
print(table)
exit(pass ? 0 : 1)

// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import Foundation
import Glibc

let MiB: UInt64 = 1 << 20
let GiB: UInt64 = 1 << 30

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// Seconds on the monotonic clock (BalloonSystem's, the one clock reader).
func now() -> Double {
    let (seconds, attoseconds) = SystemClock.monotonic().components
    return Double(seconds) + Double(attoseconds) / 1e18
}

/// Polls `condition` every 10 ms for at most `seconds`; whether it held.
func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = now() + seconds
    while now() < deadline {
        if condition() { return true }
        HostIO.sleep(.milliseconds(10))
    }
    return condition()
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}

/// min / median / max of a sample, in JSON and as text.
struct Spread {
    let values: [Double]
    var min: Double { values.min()! }
    var max: Double { values.max()! }
    var median: Double { balloon_bench.median(values) }
    var json: JSON {
        ["values": .array(values.map { .double($0) }), "min": .double(min), "median": .double(median), "max": .double(max)]
    }
    func text(_ scale: Double, _ format: String) -> String {
        "\(String(format: format, min * scale)) / \(String(format: format, median * scale)) / \(String(format: format, max * scale))"
    }
}

func readFile(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }  // nil: absent or unreadable

/// Runs a program and returns its standard output (nil if it failed).
func output(of path: String, _ arguments: [String]) -> String? {
    let p = Process()
    let out = Pipe()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    p.standardOutput = out
    do { try p.run() } catch { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return p.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
}

/// Where and on what the figures were taken: every results file carries it.
struct Provenance {
    let commit: String
    let date = ISO8601DateFormatter().string(from: Date())
    let loadAverage = (readFile("/proc/loadavg") ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    let cpus = ProcessInfo.processInfo.activeProcessorCount
    let cpuModel = (readFile("/proc/cpuinfo") ?? "").split(separator: "\n")
        .first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) } ?? "?"
    let kernel: String = {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }()
    let thp = readFile("/sys/kernel/mm/transparent_hugepage/enabled")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    /// `balloond --dump-config` for each configuration the bench ran, by label.
    var daemonSettings: [(String, String)] = []

    var json: JSON {
        .object([
            ("commit", .string(commit)), ("date", .string(date)), ("kernel", .string(kernel)), ("cpus", .int(Int64(cpus))),
            ("cpu_model", .string(cpuModel)), ("load_average_at_start", .string(loadAverage)), ("thp", .string(thp)),
            ("daemon_settings", .object(daemonSettings.map { ($0.0, .string($0.1)) })),
        ])
    }

    var markdown: String {
        var s = "Commit `\(commit)`, \(date); kernel \(kernel), \(cpus) CPUs (\(cpuModel)), load average at start \(loadAverage); THP `\(thp)`.\n"
        for (label, text) in daemonSettings {
            let keys = text.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains("=") }
            s += "\nballoond's effective settings, \(label) (`--dump-config`): `" + keys.joined(separator: "` `") + "`\n"
        }
        return s
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import Foundation
import Glibc

/// A balloond process on a unix socket in a temporary directory.
final class BenchDaemon {
    let process = Process()
    let dir: String
    let configPath: String
    var socket: String { dir + "/b.sock" }

    init(thp: Bool, executable: String) throws {
        dir = NSTemporaryDirectory() + "balloond-bench-\(ProcessInfo.processInfo.processIdentifier)-\(thp)"
        configPath = dir + "/b.conf"
        try? FileManager.default.removeItem(atPath: dir)  // none left from an earlier run is the usual case
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
        try config.write(toFile: configPath, atomically: false, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--config", configPath]
        try process.run()
        let started = waitUntil(seconds: 5) { FileManager.default.fileExists(atPath: self.socket) }
        guard started else { throw BenchError("balloond did not start") }
    }

    var pid: Int32 { process.processIdentifier }

    func session() throws -> GuestSession { try GuestSession.open(.unix(path: socket), timeout: .seconds(120)) }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)  // a leftover temp dir is harmless
    }

    /// The balloon holder processes (children of the daemon).
    var holders: [Int32] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""  // gone: no holders
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// What the balloon has locked: the daemon's VmLck and its holders'.
    var lockedTotal: UInt64 { ([pid] + holders).reduce(0) { $0 + Self.status("VmLck", pid: $1) } }

    /// The holders' own memory: private pages (clean and dirty) beyond their
    /// locked chunk, and page tables. Pages still shared copy-on-write with the
    /// daemon are in the daemon's RSS already.
    var holderOverhead: UInt64 {
        holders.reduce(0) { sum, h in
            let rollup = Self.smapsRollup(pid: h)
            let privateBytes = (rollup["Private_Clean"] ?? 0) + (rollup["Private_Dirty"] ?? 0)
            let locked = Self.status("VmLck", pid: h)
            return sum + (privateBytes > locked ? privateBytes - locked : 0) + Self.status("VmPTE", pid: h)
        }
    }

    /// Proportional set size of the daemon and its holders, minus what they lock.
    var pssExcludingBalloon: UInt64 {
        let all = [pid] + holders
        let pss = all.reduce(0) { $0 + (Self.smapsRollup(pid: $1)["Pss"] ?? 0) }
        return pss - min(pss, lockedTotal)
    }

    /// CPU time in seconds from /proc/PID/schedstat (nanosecond resolution).
    func cpuSeconds() -> Double {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/schedstat", encoding: .utf8)) ?? "0"  // gone: reported as 0
        return (Double(text.split(separator: " ")[0]) ?? 0) / 1e9
    }

    func status(_ key: String) -> UInt64 { Self.status(key, pid: pid) }

    static func status(_ key: String, pid: Int32) -> UInt64 {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""  // gone: 0
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return (UInt64(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
        }
        return 0
    }

    /// /proc/PID/smaps_rollup in bytes by key.
    static func smapsRollup(pid: Int32) -> [String: UInt64] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)) ?? ""  // gone: empty
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count >= 2, words[0].hasSuffix(":"), let kb = UInt64(words[1]) else { continue }
            values[String(words[0].dropLast())] = kb * 1024
        }
        return values
    }
}

/// Sets a target and waits for TARGET_REACHED; returns the seconds it took.
func move(_ session: GuestSession, to target: UInt64) throws -> Double {
    session.discardQueuedEvents()
    let t0 = now()
    let reply = try session.setTarget(target)
    if reply.actual == target { return now() - t0 }
    while let event = try session.nextEvent(timeout: .seconds(120)) {
        switch try? GuestEvent(event) {  // an event this bench does not know: skipped
        case let .targetReached(p)? where p.target == target: return now() - t0
        case let .targetUnreachable(_, reason)?: throw BenchError("target \(target) unreachable: \(reason)")
        default: continue
        }
    }
    throw BenchError("no TARGET_REACHED")
}

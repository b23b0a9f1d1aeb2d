// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

let MiB: UInt64 = 1 << 20

/// VM tests run when `make test` asks for them (BALLOOND_VM_TESTS=1), with the
/// initramfs it built (static balloond and balloonctl inside).
let vmTestsEnabled = ProcessInfo.processInfo.environment["BALLOOND_VM_TESTS"] == "1"
let vmInitramfs = ProcessInfo.processInfo.environment["BALLOOND_VM_INITRAMFS"] ?? ""

struct GuestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

let repositoryRoot: String = {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
        dir = dir.deletingLastPathComponent()
    }
    return dir.path
}()

/// A QEMU TCG guest booted with tests/vm/boot.sh and stopped by its saved pid.
final class Guest {
    let workdir: String
    private var stopped = false

    /// Boots and waits until the guest's control agent answers.
    init(name: String, memory: String = "1G", extra: [String] = []) throws {
        workdir = "\(repositoryRoot)/tests/vm/work/t-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: workdir)
        // Output to a file, not a pipe: QEMU keeps running in the background
        // and would hold a pipe open forever.
        let logPath = workdir + ".boot.log"
        let status = try spawnAndWait("\(repositoryRoot)/tests/vm/boot.sh",
            ["-w", workdir, "-i", vmInitramfs, "-m", memory, "--timeout", "900", "--ready-timeout", "90"] + extra,
            output: logPath)
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: logPath)
        guard status == 0 else { throw GuestError("boot failed (\(status)):\n\(text)") }
    }

    var port0: String { workdir + "/port0.sock" }
    var controlSocket: String { workdir + "/control.sock" }
    var console: String { (try? String(contentsOfFile: workdir + "/console.log", encoding: .utf8)) ?? "" }

    /// Runs one shell command line in the guest: (output, exit status).
    func run(_ command: String, timeout: Double = 120) throws -> (output: String, status: Int32) {
        let fd = try StreamSocket.connectUnix(path: controlSocket)
        defer { fd.close() }
        let tag = "t\(UInt32.random(in: 0...UInt32.max))"
        try fd.writeAll(Array("\n@\(tag) \(command)\n".utf8))
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        let marker = Array("\n__BALLOOND_RC__ ".utf8)
        while true {
            // Replies to other tags (stale) are dropped through their marker.
            while let m = find(marker, in: buffer) {
                guard let end = buffer[(m + marker.count)...].firstIndex(of: 0x0A) else { break }
                let fields = String(decoding: buffer[(m + marker.count)..<end], as: UTF8.self).split(separator: " ")
                if fields.count == 2, fields[1] == tag, let rc = Int32(fields[0]) {
                    return (String(decoding: buffer[..<m], as: UTF8.self), rc)
                }
                buffer.removeSubrange(...end)
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw GuestError("guest command timed out after \(timeout) s: \(command)") }
            var p = pollfd(fd: fd.raw, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(min(left, 1) * 1000)) > 0 else { continue }
            let n = Glibc.read(fd.raw, &chunk, chunk.count)
            guard n > 0 else { throw GuestError("control channel closed (guest died?)\n\(console.suffix(3000))") }
            buffer.append(contentsOf: chunk[..<n])
        }
    }

    /// Runs a command that must succeed; returns its output.
    @discardableResult
    func sh(_ command: String, timeout: Double = 120) throws -> String {
        let (output, status) = try run(command, timeout: timeout)
        guard status == 0 else { throw GuestError("`\(command)` exited \(status):\n\(output)") }
        return output
    }

    func meminfo(_ key: String) throws -> UInt64 {
        let v = try sh("awk '/^\(key):/ {print $2}' /proc/meminfo").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let kb = UInt64(v) else { throw GuestError("no \(key) in guest meminfo") }
        return kb * 1024
    }

    /// Starts balloond in the background with a config; returns its pid.
    func startDaemon(config: String, arguments: String = "", name: String = "balloond") throws -> Int32 {
        // `config` uses \n escapes for printf to expand.
        try sh("printf '\(config)' > /tmp/\(name).conf")
        let pid = try sh("balloond --config /tmp/\(name).conf \(arguments) >/tmp/\(name).log 2>&1 & echo $!")
        guard let p = Int32(pid.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw GuestError("no pid: \(pid)") }
        let started = try waitUntil(timeout: .seconds(30), interval: .milliseconds(100)) {
            if try daemonLog(name).contains("started") { return true }
            if try run("kill -0 \(p)").status != 0 { throw GuestError("balloond died at start:\n\(try daemonLog(name))") }
            return false
        }
        guard started else { throw GuestError("balloond did not start:\n\(try daemonLog(name))") }
        return p
    }

    func daemonLog(_ name: String = "balloond") throws -> String { try sh("cat /tmp/\(name).log") }

    /// Memory the balloon has locked: VmLck of the daemon and its holders.
    func balloonLocked(_ pid: Int32) throws -> UInt64 {
        let kb = try sh("for p in \(pid) $(cat /proc/\(pid)/task/\(pid)/children); do awk '/^VmLck:/ {print $2}' /proc/$p/status; done | awk '{s+=$1} END {print s+0}'")
        return (UInt64(kb.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) * 1024
    }

    /// utime + stime of a guest process, in clock ticks (100 a second).
    func cpuTicks(_ pid: Int32) throws -> UInt64 {
        let stat = try sh("cat /proc/\(pid)/stat")
        // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
        guard let close = stat.lastIndex(of: ")") else { throw GuestError("bad stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return UInt64(fields[11])! + UInt64(fields[12])!
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        _ = try? spawnAndWait("\(repositoryRoot)/tests/vm/stop.sh", [workdir], output: "/dev/null")
        try? FileManager.default.removeItem(atPath: workdir)
    }

    deinit { stop() }
}

/// Runs a program to completion with stdout and stderr to a file. Foundation's
/// Process is not used here: its child reaping did not happen reliably under
/// the test runner once the child left background processes behind.
func spawnAndWait(_ path: String, _ arguments: [String], output: String) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard rc == 0 else { throw GuestError("cannot run \(path): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    // Exit code when exited normally, else 128 + signal.
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    var i = 0
    while i <= haystack.count - needle.count {
        if haystack[i] == needle[0] && Array(haystack[i..<(i + needle.count)]) == needle { return i }
        i += 1
    }
    return nil
}

/// A host session on the guest's virtio-serial port (QEMU's chardev socket).
func hostSession(_ guest: Guest, timeout: Int64 = 60) throws -> GuestSession {
    try GuestSession.open(.unix(path: guest.port0), timeout: .seconds(timeout))
}

/// Waits for an event from the session, collecting every event seen.
func waitForEvent(_ session: GuestSession, _ name: String, timeout: Int64 = 240, into seen: inout [Event]) throws -> Event {
    let deadline = Date().addingTimeInterval(Double(timeout))
    while Date() < deadline {
        guard let event = try session.nextEvent(timeout: .seconds(max(1, Int64(deadline.timeIntervalSinceNow)))) else { break }
        seen.append(event)
        if event.name == name { return event }
        // Waiting for arrival: an unreachable target will not arrive.
        if name == "TARGET_REACHED", event.name == "TARGET_UNREACHABLE" {
            throw GuestError("TARGET_UNREACHABLE instead of TARGET_REACHED: \(event.data.serialized())")
        }
    }
    throw GuestError("no \(name) within \(timeout) s; saw \(seen.map(\.name))")
}

/// Records the guest console and daemon log when a test fails.
func withGuestDiagnostics<T>(_ guest: Guest, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        let log = (try? guest.daemonLog()) ?? "(no daemon log)"
        Issue.record("\(error)\n--- balloond log ---\n\(log)\n--- console (tail) ---\n\(guest.console.suffix(4000))")
        throw error
    }
}

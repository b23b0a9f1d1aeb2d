// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

let MiB: UInt64 = 1 << 20
let GiB: UInt64 = 1 << 30

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Where SwiftPM put the executables: next to the test runner.
let productsDirectory: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let exe = String(decoding: buf[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var dir = (exe as NSString).deletingLastPathComponent
    // The runner may live inside an .xctest bundle directory.
    while !FileManager.default.fileExists(atPath: dir + "/balloond"), dir != "/" {
        dir = (dir as NSString).deletingLastPathComponent
    }
    return dir
}()

func meminfo(_ key: String) -> UInt64 {
    let text = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
    for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
        return UInt64(line.split(separator: " ")[1])! * 1024
    }
    return 0
}

func statusValue(_ pid: Int32, _ key: String) -> UInt64? {
    ProcessStatus.value(key, pid: String(pid))
}

/// The daemon's child processes (balloon holders).
func children(of pid: Int32) -> [Int32] {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
    return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

/// Memory the balloon has locked: the daemon's VmLck and its holders'.
func balloonLocked(_ pid: Int32) -> UInt64 {
    ([pid] + children(of: pid)).reduce(0) { $0 + (statusValue($1, "VmLck") ?? 0) }
}

/// A temporary directory with a config for a daemon on a unix socket.
final class Sandbox {
    let dir: String
    var socket: String { dir + "/balloond.sock" }
    var configPath: String { dir + "/balloond.conf" }

    init(config extra: String = "") throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("balloond-test-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try writeConfig(extra)
    }

    func writeConfig(_ extra: String) throws {
        let text = "[Channel]\nListen=unix:\(socket)\n" + extra
        try text.write(toFile: configPath, atomically: false, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}

/// A balloond process; killed at deinit if still running.
final class DaemonProcess: @unchecked Sendable {
    let process = Process()
    let stderrPipe = Pipe()
    private var stderrData = Data()
    private let lock = NSLock()

    init(arguments: [String], waitForSocket socket: String?, environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/balloond")
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock(); self.stderrData.append(d); self.lock.unlock()
        }
        try process.run()
        if let socket {
            let created = waitUntil { !process.isRunning || FileManager.default.fileExists(atPath: socket) }
            guard created, process.isRunning else {
                throw HarnessError("balloond did not create \(socket): \(log)")
            }
        }
    }

    var pid: Int32 { process.processIdentifier }

    var log: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: stderrData, as: UTF8.self)
    }

    func signal(_ sig: Int32) { kill(pid, sig) }

    /// Waits for exit; returns the status, or nil on timeout.
    func waitForExit(timeout: TimeInterval = 15) -> Int32? {
        guard waitUntil(timeout: .milliseconds(Int64(timeout * 1000)), { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
        stderrPipe.fileHandleForReading.readabilityHandler = nil
    }
}

/// A raw protocol client: sends bytes, reads lines, so tests can check the
/// wire exactly (0xFF before the sync reply, error replies with id null).
final class RawClient {
    let fd: Descriptor
    var framer = LineFramer(maxLineBytes: 1 << 20)
    var pending: [LineFramer.Item] = []
    var nextID: Int64 = 1

    /// The socket's file appears at bind(2), a moment before listen(2), and a
    /// restarted server first unlinks the stale file its predecessor left: a
    /// refused connection, or a file gone for that moment, is tried again
    /// until the server listens.
    init(socket: String) throws {
        var outcome: Result<Descriptor, SystemError> = .failure(SystemError("connect", subject: socket, errno: .connectionRefused))
        waitUntil {
            do throws(SystemError) {
                outcome = .success(try StreamSocket.connectUnix(path: socket))
                return true
            } catch {
                outcome = .failure(error)
                return error.errno != .connectionRefused && error.errno != .noSuchFileOrDirectory
            }
        }
        fd = try outcome.get()
    }

    func send(_ bytes: [UInt8]) throws { try fd.writeAll(bytes) }
    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// The next framer item, waiting up to `timeout` seconds.
    func nextItem(timeout: Double = 10) throws -> LineFramer.Item? {
        let deadline = Date().addingTimeInterval(timeout)
        var buf = [UInt8](repeating: 0, count: 65536)
        while pending.isEmpty {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return nil }
            var p = pollfd(fd: fd.raw, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left * 1000)) > 0 else { continue }
            let n = Glibc.read(fd.raw, &buf, buf.count)
            if n <= 0 { throw HarnessError("connection closed by balloond") }
            pending.append(contentsOf: framer.feed(buf[0..<n]))
        }
        return pending.removeFirst()
    }

    func nextMessage(timeout: Double = 10) throws -> Message? {
        while let item = try nextItem(timeout: timeout) {
            if case let .line(bytes) = item { return try Message.decode(bytes) }
        }
        return nil
    }

    /// Sends a request and returns its reply, collecting events seen meanwhile.
    @discardableResult
    func call(_ command: String, _ arguments: JSON = [:], events: inout [Event]) throws -> Response {
        let id = JSON.int(nextID)
        nextID += 1
        try send(Message.request(Request(command, arguments: arguments, id: id)).encoded())
        while let message = try nextMessage() {
            switch message {
            case let .response(r) where r.id == id: return r
            case let .event(e): events.append(e)
            default: continue
            }
        }
        throw HarnessError("no reply to \(command)")
    }

    @discardableResult
    func call(_ command: String, _ arguments: JSON = [:]) throws -> Response {
        var ignored: [Event] = []
        return try call(command, arguments, events: &ignored)
    }

    @discardableResult
    func value(_ command: String, _ arguments: JSON = [:]) throws -> JSON {
        switch try call(command, arguments).result {
        case let .success(v): return v
        case let .failure(e): throw HarnessError("\(command) failed: \(e)")
        }
    }

    /// Collects events until one named `name` arrives.
    func waitForEvent(_ name: String, timeout: Double = 60, into events: inout [Event]) throws -> Event {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let m = try nextMessage(timeout: deadline.timeIntervalSinceNow) else { break }
            if case let .event(e) = m {
                events.append(e)
                if e.name == name { return e }
            }
        }
        throw HarnessError("no \(name) event within \(timeout) s; saw \(events.map(\.name))")
    }

    /// The protocol's session start: 0xFF, sync, discard up to the guest's 0xFF.
    func sync() throws {
        let id = JSON.int(Int64.random(in: 1...(1 << 52)))
        try send([0xFF] + Message.request(Request("sync", arguments: ["id": id], id: id)).encoded())
        var sawResync = false
        while let item = try nextItem() {
            switch item {
            case .resync: sawResync = true
            case let .line(bytes):
                if sawResync, case let .response(r) = try Message.decode(bytes), r.id == id, r.result == .success(id) { return }
            case .tooLong: continue
            }
        }
        throw HarnessError("sync got no reply")
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Glibc

// Helpers for the punching and serve tests: sparse files on /dev/shm, a
// program running in the background, polling serve-status.

/// A file on /dev/shm filled with a byte pattern so its blocks are allocated;
/// removed by `remove()`.
struct ShmFile {
    let path: String

    init(size: Int, fill: UInt8 = 0xAB) {
        path = "/dev/shm/balloonhost-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "cannot create \(path)")
        let chunk = [UInt8](repeating: fill, count: 1 << 20)
        var written = 0
        while written < size {
            let n = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, min($0.count, size - written)) }
            precondition(n > 0)
            written += n
        }
        close(fd)
    }

    func remove() { unlink(path) }

    func status() -> BackingFile.Status {
        let file = try! BackingFile(path: path)
        return try! file.status()
    }

    /// The bytes at [offset, offset + count).
    func read(_ offset: UInt64, _ count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        precondition(n == count)
        return out
    }

    func isFilled(_ offset: UInt64, _ count: Int, with byte: UInt8) -> Bool { read(offset, count).allSatisfy { $0 == byte } }
}

/// A program started in the background with stdout/stderr in files.
final class Background: @unchecked Sendable {
    let pid: pid_t
    let outPath: String
    let errPath: String
    private var finished: ProcessResult?

    init(_ path: String, _ arguments: [String], in dir: TempDir, name: String) {
        outPath = dir.path + "/\(name).out"
        errPath = dir.path + "/\(name).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        precondition(rc == 0, "posix_spawn \(path) failed: \(rc)")
        self.pid = pid
    }

    /// Waits for the exit (at most `seconds`, then SIGKILL).
    @discardableResult
    func wait(seconds: Double = 20) -> ProcessResult {
        if let finished { return finished }
        if waitUntil(timeout: .secondsValue(seconds), { reap(blocking: false) }) == false {
            kill(pid, SIGKILL)
            _ = reap(blocking: true)
        }
        return finished!
    }

    /// True once the program has exited (its result is then kept).
    var hasExited: Bool { finished != nil || reap(blocking: false) }

    private func reap(blocking: Bool) -> Bool {
        var status: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &status, blocking ? 0 : WNOHANG) } while r == -1 && errno == EINTR
        guard r == pid else { return false }
        let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        func slurp(_ p: String) -> String { String(decoding: (try? readWholeFile(p)) ?? [], as: UTF8.self) }
        finished = ProcessResult(status: code, stdout: slurp(outPath), stderr: slurp(errPath))
        return true
    }

    func terminate() -> ProcessResult {
        if finished == nil { kill(pid, SIGTERM) }
        return wait()
    }

    var stderrSoFar: String { String(decoding: (try? readWholeFile(errPath)) ?? [], as: UTF8.self) }
}

/// serve-status through the control socket, or nil if serve does not answer.
func serveStatus(_ control: String) -> ServeStatus? {
    guard let session = try? GuestSession.open(.unix(path: control), timeout: .seconds(2)) else { return nil }
    defer { session.close() }
    return try? session.call(.serveStatus, as: ServeStatus.self)
}

/// Polls serve-status until `condition` holds (the status) or `seconds` pass (nil).
@discardableResult
func waitForStatus(_ control: String, seconds: Double = 10, _ condition: (ServeStatus) -> Bool) -> ServeStatus? {
    waitFor(timeout: .secondsValue(seconds), interval: .milliseconds(20)) {
        serveStatus(control).flatMap { condition($0) ? $0 : nil }
    }
}

/// A thread-safe log of what the fake guest saw.
final class Recorder: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var items: [String] = []
    init() { pthread_mutex_init(&mutex, nil) }
    func add(_ s: String) {
        pthread_mutex_lock(&mutex)
        items.append(s)
        pthread_mutex_unlock(&mutex)
    }
    var all: [String] {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return items
    }
}

extension FakeGuest {
    /// Answers requests the generic way until one named `command` arrives,
    /// which is returned unanswered. nil on EOF or timeout. The timeout only
    /// keeps a broken test from hanging: a test may go 10 s and more between
    /// two requests on a loaded machine (each balloonctl it runs is a process
    /// start), and a fake guest that hangs up then fails the test wrongly.
    func serveUntil(_ command: Command.Name?, recorder: Recorder, timeoutMs: Int32 = 60_000) -> Request? {
        while let r = readRequest(timeoutMs: timeoutMs) {
            recorder.add(r.execute + " " + r.arguments.serialized())
            if r.execute == command?.rawValue { return r }
            answer(r)
        }
        return nil
    }

    /// Answers every request until EOF.
    func serveAll(recorder: Recorder) {
        _ = serveUntil(nil, recorder: recorder, timeoutMs: 60_000)
    }

    func answer(_ r: Request) {
        let command: Command
        do { command = try Command(r) } catch { return fail(r, error.errorClass, error.desc) }
        switch command {
        case .sync: answerSync(r)
        case .info: reply(r, Canned.info)
        case .query: reply(r, Canned.query(target: 0, actual: 0, state: .idle))
        case .stats: reply(r, Canned.stats)
        case let .setTarget(t):
            reply(r, SetTargetReply(target: t, effectiveTarget: t, actual: 0).json)
            event(.balloonChange(.init(actual: 4096, target: t)))
        case let .setStatsInterval(interval): reply(r, StatsIntervalReply(interval: interval).json)
        case let .setFrameReporting(enabled):
            reply(r, FrameReportingReply(enabled: enabled, pageSize: 4096, frames: 0, instance: instance, grace: grace).json)
        case let .framesAck(seq, named):
            if let named, named != instance { return fail(r, .staleInstance, "instance \(named) is not this daemon's") }
            reply(r, FramesAckReply(acked: seq).json)
        case let .setFreeMemoryReporting(enabled): reply(r, FreeMemoryReportingReply(enabled: enabled, cushion: 64 << 20, coldCache: false).json)
        case .rescanFrames, .serveStatus: fail(r, .commandNotFound, "no command \(r.execute)")
        }
    }

    func frames(_ name: GuestEvent.Name, seq: UInt64, _ ranges: [JSON]) {
        rawEvent(name, ["seq": .uint(seq), "page-size": 4096, "ranges": .array(ranges)])
    }
}

/// A process that maps a RAM file shared and writable, as QEMU maps guest
/// RAM, and touches none of it; `present` reads its page table.
final class RamMapper {
    let process: Background
    let base: UInt64
    private let pagemap: Pagemap

    init?(_ path: String, in dir: TempDir) {
        let script = """
            import ctypes, mmap, sys, time
            f = open(sys.argv[1], 'r+b')
            m = mmap.mmap(f.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            print(hex(ctypes.addressof(ctypes.c_char.from_buffer(m))), flush=True)
            time.sleep(300)
            """
        process = Background("/usr/bin/python3", ["-c", script, path], in: dir, name: "mapper")
        let out = process.outPath
        guard let base = waitFor({ () -> UInt64? in
            let text = String(decoding: (try? readWholeFile(out)) ?? [], as: UTF8.self)
            return text.hasSuffix("\n") ? UInt64(text.dropFirst(2).dropLast(), radix: 16) : nil
        }), let pagemap = try? Pagemap(path: "/proc/\(process.pid)/pagemap") else {
            kill(process.pid, SIGKILL)
            process.wait()
            return nil
        }
        self.base = base
        self.pagemap = pagemap
    }

    /// Whether each page of file range [offset, offset + length) is in the mapper's page table.
    func present(_ offset: UInt64, _ length: UInt64) throws -> [Bool] {
        try pagemap.frames(at: UInt(base + offset), pages: Int(length / 4096)).map { $0 != nil }
    }

    /// SIGKILL: a spawned child inherits the test runner's signal mask, which may block SIGTERM.
    func stop() {
        kill(process.pid, SIGKILL)
        process.wait()
    }
}

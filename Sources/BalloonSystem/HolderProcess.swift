import CBalloonShim
import Glibc

/// A chunk of the balloon held by a small child process (DESIGN: the OOM
/// killer prefers the largest process, which a big balloon is). The child
/// maps and mlocks the chunk itself, sets oom_score_adj=1000 so the OOM
/// killer takes it before any workload, and dies with the daemon
/// (PR_SET_PDEATHSIG), which gives the memory back at once.
///
/// The child is a fork of the daemon that never execs: copy-on-write makes
/// it cost a few pages, and creating it takes a fraction of a millisecond
/// (an exec of the whole daemon, with its loader and relocations, cost about
/// 1 MiB and several milliseconds per chunk). This relies on the daemon being
/// single-threaded, which it is (one epoll loop, no Dispatch, no Foundation).
/// The child's work is `cballoon_holder_main` (C, so it writes almost nothing
/// to the pages it shares with the daemon). It answers on a pipe and takes
/// commands on another: `ok ADDRESS` after locking (or `error TEXT`);
/// `shrink LENGTH` → `ok`.
public final class HolderProcess {
    public let pid: pid_t
    /// The chunk's address in the child (for /proc/PID/pagemap); 0 while spare.
    public private(set) var address: UInt = 0
    public private(set) var length: Int = 0
    private let commands: Descriptor
    private let replies: Descriptor
    private var reaped = false

    /// Forks a spare holder: a child that waits for `startLock(length:advice:)`.
    /// Forking marks the daemon's pages copy-on-write, so its next writes
    /// fault; forking the next spare while the current holder locks its chunk
    /// keeps that cost off the inflation path.
    public init() throws(SystemError) {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        _ = try syscall("pipe2") { cballoon_pipe2(&toChild, O_CLOEXEC) }
        let commandsEnd = Descriptor(adopting: toChild[1]), childIn = Descriptor(adopting: toChild[0])
        _ = try syscall("pipe2") { cballoon_pipe2(&fromChild, O_CLOEXEC) }
        let repliesEnd = Descriptor(adopting: fromChild[0]), childOut = Descriptor(adopting: fromChild[1])
        let parent = getpid()

        let child = fork()
        if child == 0 {
            // The child: keep only its two pipes (as 0 and 1) and stderr.
            dup2(childIn.raw, 0)
            dup2(childOut.raw, 1)
            cballoon_close_from(3)
            cballoon_unblock_all_signals()
            signal(SIGPIPE, SIG_DFL)
            cballoon_holder_main(parent)
        }
        guard child > 0 else { throw SystemError("fork", subject: "balloon holder", errno: .init(rawValue: errno)) }
        childIn.close()
        childOut.close()
        pid = child
        commands = commandsEnd
        replies = repliesEnd
    }

    /// Asks the holder to map and lock its chunk; `finishLock()` waits for it.
    public func startLock(length: Int, advice: HugePageAdvice) {
        let code = switch advice { case .advise: 1; case .forbid: 0; case .leave: 2 }
        send("lock \(length) \(code)\n")
        self.length = length
    }

    /// Waits until the chunk is locked (or the holder failed).
    public func finishLock() throws(SystemError) {
        let line = Self.readLine(replies)
        let words = line?.split(separator: " ", maxSplits: 1) ?? []
        guard words.first == "ok", words.count == 2, let addr = UInt(words[1], radix: 16) else {
            release()
            length = 0
            let why = words.first == "error" && words.count == 2 ? String(words[1]) : "the holder process exited (\(line ?? "no answer"))"
            throw SystemError("holder", subject: why, errno: .init(rawValue: ENOMEM))
        }
        address = addr
    }

    /// A holder with its chunk locked, in one step.
    public convenience init(length: Int, advice: HugePageAdvice) throws(SystemError) {
        try self.init()
        startLock(length: length, advice: advice)
        try finishLock()
    }

    private func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(commands.raw, $0.baseAddress, $0.count) }
    }

    deinit { release() }

    /// Whether the child still runs (not killed by the OOM killer).
    public var isAlive: Bool { !reaped && kill(pid, 0) == 0 }

    /// Gives the tail back: the child munlocks and unmaps it.
    public func shrink(to newLength: Int) {
        guard !reaped, newLength < length else { return }
        if newLength == 0 { release(); return }
        send("shrink \(newLength)\n")
        if Self.readLine(replies) == "ok" { length = newLength } else { release() }
    }

    /// Ends the child: the kernel gives its memory back as the process exits.
    public func release() {
        guard !reaped else { return }
        reaped = true
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        commands.close()
        replies.close()
    }

    /// Called when the daemon reaped this child itself (it died on its own).
    public func markReaped() {
        reaped = true
        commands.close()
        replies.close()
    }

    static func readLine(_ fd: Descriptor) -> String? {
        var out: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = Glibc.read(fd.raw, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { return out.isEmpty ? nil : String(decoding: out, as: UTF8.self) }
            if byte == 0x0A { return String(decoding: out, as: UTF8.self) }
            out.append(byte)
        }
    }
}

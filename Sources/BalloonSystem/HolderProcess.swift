// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc
import SystemPackage

/// A chunk of the balloon held by a small child process (docs/pressure.md:
/// the OOM killer prefers the largest process, which a big balloon is). The child
/// maps and mlocks the chunk itself, sets oom_score_adj=1000 so the OOM
/// killer takes it before any workload. When the daemon dies (its command
/// pipe closes) the child exits, which gives the memory back, at once or,
/// while it holds frames the host has not acknowledged, after the linger
/// time (`setLinger`): a host that read the report late may still free them
/// (docs/protocol.md, "Frame reporting: ordering", rule 5).
///
/// The child is a fork of the daemon that never execs: copy-on-write makes
/// it cost a few pages, and creating it takes a fraction of a millisecond
/// (an exec of the whole daemon, with its loader and relocations, cost about
/// 1 MiB and several milliseconds per chunk). This relies on the daemon being
/// single-threaded, which it is (one epoll loop, no Dispatch, no Foundation).
/// The child's work is `cballoon_holder_main` (C, so it writes almost nothing
/// to the pages it shares with the daemon). It answers on a pipe and takes
/// commands on another: `ok ADDRESS` after locking (or `error CALL ERRNO`);
/// `shrink LENGTH` → `ok`; `empty` → `ok` (the whole chunk unmapped, the child a spare again,
/// waiting for the next `lock`); `linger MS` has no answer. The chunk is mapped and locked by the same C
/// routine as a `LockedRegion` (`cballoon_map_locked`).
package final class HolderProcess {
    package let pid: pid_t
    /// The chunk's address in the child (for /proc/PID/pagemap); 0 while spare.
    package private(set) var address: UInt = 0
    package private(set) var length: Int = 0
    private let commands: Descriptor
    private let replies: Descriptor
    private var reaped = false
    /// What the child was last told to linger after the daemon's death.
    private var linger: Duration = .zero

    /// Forks a spare holder: a child that waits for `startLock(length:advice:)`.
    /// Forking marks the daemon's pages copy-on-write, so its next writes
    /// fault; forking the next spare while the current holder locks its chunk
    /// keeps that cost off the inflation path.
    package init() throws(SystemError) {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        _ = try syscall("pipe2") { cballoon_pipe2(&toChild, O_CLOEXEC) }
        let commandsEnd = Descriptor(adopting: toChild[1]), childIn = Descriptor(adopting: toChild[0])
        _ = try syscall("pipe2") { cballoon_pipe2(&fromChild, O_CLOEXEC) }
        let repliesEnd = Descriptor(adopting: fromChild[0]), childOut = Descriptor(adopting: fromChild[1])
        let parent = getpid()

        let child = try syscall("fork", subject: "balloon holder") { fork() }
        if child == 0 {
            // The child: keep only its two pipes (as 0 and 1) and stderr. It
            // has no way to report a failure here but to exit, which the
            // parent sees as a holder that never answered.
            guard dup2(childIn.raw, 0) == 0, dup2(childOut.raw, 1) == 1 else { _exit(1) }
            cballoon_close_from(3)
            cballoon_unblock_all_signals()
            signal(SIGPIPE, SIG_DFL)
            cballoon_holder_main(parent)
        }
        childIn.close()
        childOut.close()
        pid = child
        commands = commandsEnd
        replies = repliesEnd
    }

    /// Asks the holder to map and lock its chunk; `finishLock()` waits for it.
    package func startLock(length: Int, advice: HugePageAdvice) {
        send("lock \(length) \(advice.shimCode)\n")
        self.length = length
    }

    /// Waits until the chunk is locked (or the holder failed). A failed call
    /// in the holder comes back as that call with its errno (mlock(2):
    /// ENOMEM is RLIMIT_MEMLOCK, EAGAIN pages that could not be had); a holder
    /// that died or answered anything else is `.holderExited`.
    package func finishLock() throws(SystemError) {
        let line = readLine()
        let words = line?.split(separator: " ") ?? []
        if words.count == 2, words[0] == "ok", let addr = UInt(words[1], radix: 16) {
            address = addr
            return
        }
        let subject = "\(length) bytes (holder \(pid))"
        release()
        length = 0
        if words.count == 3, words[0] == "error", let code = Int32(words[2]) {
            throw SystemError(String(words[1]), subject: subject, errno: Errno(rawValue: code))
        }
        throw SystemError("holder", subject: subject, cause: .holderExited(answer: line))
    }

    /// `finishLock()`, giving way to PSI trigger descriptors: locking makes
    /// the kernel reclaim, and a guest that stalls meanwhile must not wait for
    /// the lock to finish before the balloon answers. When one fires before
    /// the holder answers, the holder is ended (what it had locked goes back
    /// as it exits) and this throws `.lockInterrupted`. Polling a trigger
    /// takes its event (the kernel reports each firing once), so the indices
    /// of those that fired, finished lock or not, are added to `fired` for the
    /// caller to answer.
    ///
    /// `watch`: a descriptor the lock also waits on (the host's channel).
    /// Each time it is readable its `readable()` runs: `.giveWay` ends the
    /// holder as a trigger does and throws `.lockYielded`; `.stopWatching`
    /// leaves it out for the rest of this lock.
    package func finishLock(interruptedBy interrupters: [Descriptor], fired: inout [Int], watching watch: LockWatch? = nil) throws(SystemError) {
        var watch = watch
        while !interrupters.isEmpty || watch != nil {
            let ready = Self.waitAny(readable: replies.raw, also: watch?.descriptor.raw, priority: interrupters.map(\.raw))
            fired += ready.priority
            if ready.readable { break }
            if !ready.priority.isEmpty { throw endLock(.lockInterrupted) }
            guard ready.also, let current = watch else { continue }
            switch current.readable() {
            case .giveWay: throw endLock(.lockYielded)
            case .wait: break
            case .stopWatching: watch = nil
            }
        }
        try finishLock()
    }

    /// Ends a lock that did not finish: the holder exits, and what it had
    /// locked goes back with it.
    private func endLock(_ cause: SystemError.Cause) -> SystemError {
        let subject = "\(length) bytes (holder \(pid))"
        release()
        length = 0
        return SystemError("mlock", subject: subject, cause: cause)
    }

    /// A holder with its chunk locked, in one step.
    package convenience init(length: Int, advice: HugePageAdvice) throws(SystemError) {
        try self.init()
        startLock(length: length, advice: advice)
        try finishLock()
    }

    /// How long the child keeps its chunk after the daemon dies (`.zero`:
    /// it exits at once). Sent only when it changes: no answer is awaited.
    package func setLinger(_ time: Duration) {
        guard !reaped, time != linger else { return }
        linger = time
        send("linger \(time.inMilliseconds)\n")
    }

    /// A command to the holder; if it died (EPIPE) the answer that never
    /// comes says so, so the failure is not reported twice.
    private func send(_ text: String) {
        try? commands.writeAll(Array(text.utf8))  // EPIPE: reported by the missing answer
    }

    deinit { release() }

    /// Whether the child still runs (not killed by the OOM killer).
    package var isAlive: Bool { !reaped && bestEffortSyscall("kill(0)") { kill(pid, 0) } == nil }

    /// Whether the child was ended and reaped (released, or found dead):
    /// whatever it held is back with the kernel.
    package var hasEnded: Bool { reaped }

    /// Gives the tail back: the child munlocks and unmaps it.
    package func shrink(to newLength: Int) {
        guard !reaped, newLength < length else { return }
        if newLength == 0 { release(); return }
        send("shrink \(newLength)\n")
        if readLine() == "ok" { length = newLength } else { release() }
    }

    /// Gives the whole chunk back and keeps the child, a spare again for the
    /// next `startLock`: a holder's exit was about a third of the guest's
    /// CPU in a deflate (bench/results-host-deflate-holders-1e438a5.md), and
    /// the growth that follows would fork another. False (and the child
    /// ended) when it did not answer: it is gone either way.
    package func empty() -> Bool {
        guard !reaped else { return false }
        guard length > 0 else { return true }
        send("empty\n")
        guard readLine() == "ok" else {
            release()
            return false
        }
        address = 0
        length = 0
        linger = .zero  // the child forgot it too: nothing held, nothing to linger for
        return true
    }

    /// Ends the child: the kernel gives its memory back as the process exits.
    package func release() {
        guard !reaped else { return }
        reaped = true
        // Our own unreaped child: neither call can fail but for a bug.
        bestEffortSyscall("kill(SIGKILL)") { kill(pid, SIGKILL) }
        var status: Int32 = 0
        bestEffortSyscall("waitpid") { waitpid(pid, &status, 0) }
        commands.close()
        replies.close()
    }

    /// Called when the daemon reaped this child itself (it died on its own).
    package func markReaped() {
        reaped = true
        commands.close()
        replies.close()
    }

    /// One line from the holder, or nil if it closed its end first (died).
    private func readLine() -> String? {
        var out: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            // A read error on our own pipe is a holder that is gone, as is EOF.
            guard let n = try? syscall("read", subject: "holder \(pid)", { Glibc.read(replies.raw, &byte, 1) }), n == 1 else {
                return out.isEmpty ? nil : String(decoding: out, as: UTF8.self)
            }
            if byte == 0x0A { return String(decoding: out, as: UTF8.self) }
            out.append(byte)
        }
    }
}

/// A descriptor a chunk lock also waits on, and what to do when it is
/// readable (`HolderProcess.finishLock(interruptedBy:fired:watching:)`).
package struct LockWatch {
    package enum Answer: Equatable { case giveWay, wait, stopWatching }

    package let descriptor: Descriptor
    package let readable: () -> Answer

    package init(descriptor: Descriptor, readable: @escaping () -> Answer) {
        self.descriptor = descriptor
        self.readable = readable
    }
}

extension HolderProcess {
    /// Waits, without a timeout, until `readable` is readable (or hung up),
    /// `also` is readable (or hung up, or in error), or one of `priority`
    /// has POLLPRI (a PSI trigger that fired). Returns which of the first
    /// two are ready and the indices of the `priority` descriptors that
    /// fired. A priority descriptor in error is left out of the wait (it
    /// cannot fire); EINTR waits again; any other failure of poll(2) on
    /// descriptors we own is a bug, answered as `readable` so the caller's
    /// read says what happened.
    static func waitAny(readable: Int32, also: Int32? = nil, priority: [Int32]) -> (readable: Bool, also: Bool, priority: [Int]) {
        var watched = Array(priority.indices)
        let extra = also.map { [pollfd(fd: $0, events: Int16(POLLIN), revents: 0)] } ?? []
        while true {
            var fds = [pollfd(fd: readable, events: Int16(POLLIN), revents: 0)] + extra
            fds += watched.map { pollfd(fd: priority[$0], events: Int16(POLLPRI), revents: 0) }
            let count = nfds_t(fds.count)
            guard case .success = funnel({ "poll" }, { Glibc.poll(&fds, count, -1) }) else { return (true, false, []) }
            let alsoReady = !extra.isEmpty && fds[1].revents != 0
            let events = fds.dropFirst(1 + extra.count).map(\.revents)
            let fired = zip(watched, events).filter { $0.1 & Int16(POLLPRI) != 0 }.map(\.0)
            if fds[0].revents != 0 || alsoReady || !fired.isEmpty { return (fds[0].revents != 0, alsoReady, fired) }
            watched = zip(watched, events).filter { $0.1 == 0 }.map(\.0)
        }
    }
}

import CBalloonShim
import Glibc

/// A chunk of the balloon held by a small child process (DESIGN: the OOM
/// killer prefers the largest process, which a big balloon is). The child
/// maps and mlocks the chunk itself, sets oom_score_adj=1000 so the OOM
/// killer takes it before any workload, and dies with the daemon
/// (PR_SET_PDEATHSIG), which gives the memory back at once.
///
/// The child is this same executable run as `EXE --internal-holder BYTES THP`
/// (THP = advise|forbid|leave; see `HolderMain`); it answers on its stdout and takes commands on stdin:
/// `ok ADDRESS` after locking (or `error TEXT`); `shrink LENGTH` → `ok`.
public final class HolderProcess {
    public let pid: pid_t
    /// The chunk's address in the child (for /proc/PID/pagemap).
    public let address: UInt
    public private(set) var length: Int
    private let commands: Descriptor
    private let replies: Descriptor
    private var reaped = false

    public static let argument = "--internal-holder"

    public init(executable: String, length: Int, advice: HugePageAdvice) throws(SystemError) {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        _ = try syscall("pipe2") { cballoon_pipe2(&toChild, O_CLOEXEC) }
        let commandsEnd = Descriptor(adopting: toChild[1]), childIn = Descriptor(adopting: toChild[0])
        _ = try syscall("pipe2") { cballoon_pipe2(&fromChild, O_CLOEXEC) }
        let repliesEnd = Descriptor(adopting: fromChild[0]), childOut = Descriptor(adopting: fromChild[1])

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, childIn.raw, 0)
        posix_spawn_file_actions_adddup2(&actions, childOut.raw, 1)
        // The daemon blocks the signals it reads through signalfd; the child
        // must not inherit that mask (SIGTERM would not end it).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let args = [executable, Self.argument, String(length), advice.rawValue]
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw SystemError("posix_spawn", subject: executable, errno: .init(rawValue: rc)) }
        childIn.close()
        childOut.close()
        pid = child
        commands = commandsEnd
        replies = repliesEnd
        self.length = length

        let line = Self.readLine(repliesEnd)
        let words = line?.split(separator: " ", maxSplits: 1) ?? []
        guard words.first == "ok", words.count == 2, let addr = UInt(words[1], radix: 16) else {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
            reaped = true
            let why = words.first == "error" && words.count == 2 ? String(words[1]) : "the holder process exited (\(line ?? "no answer"))"
            throw SystemError("holder", subject: why, errno: .init(rawValue: ENOMEM))
        }
        address = addr
    }

    deinit { release() }

    /// Whether the child still runs (not killed by the OOM killer).
    public var isAlive: Bool { !reaped && kill(pid, 0) == 0 }

    /// Gives the tail back: the child munlocks and unmaps it.
    public func shrink(to newLength: Int) {
        guard !reaped, newLength < length else { return }
        if newLength == 0 { release(); return }
        let command = Array("shrink \(newLength)\n".utf8)
        _ = command.withUnsafeBytes { Glibc.write(commands.raw, $0.baseAddress, $0.count) }
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

/// The child side of a holder: `balloond --internal-holder BYTES THP`.
public enum HolderMain {
    public static func run(arguments: [String]) -> Never {
        guard arguments.count == 2, let length = Int(arguments[0]), let advice = HugePageAdvice(rawValue: arguments[1]) else {
            reply("error usage: \(HolderProcess.argument) BYTES advise|forbid|leave")
            exit(2)
        }
        // Die with the daemon, whatever kills it.
        _ = cballoon_set_pdeathsig(SIGKILL)
        if getppid() == 1 { exit(1) }
        // First in line for the OOM killer: this is balloon memory.
        if let fd = try? Descriptor.open("/proc/self/oom_score_adj", flags: O_WRONLY) {
            let v = Array("1000".utf8)
            _ = v.withUnsafeBytes { Glibc.write(fd.raw, $0.baseAddress, $0.count) }
        }
        let region: LockedRegion
        do {
            region = try LockedRegion(length: length, advice: advice)
        } catch {
            reply("error \(error)")
            exit(1)
        }
        reply("ok \(String(UInt(bitPattern: region.base), radix: 16))")
        let stdin = Descriptor(adopting: 0)
        while let line = HolderProcess.readLine(stdin) {
            let words = line.split(separator: " ")
            if words.count == 2, words[0] == "shrink", let n = Int(words[1]), n % PageSize.bytes == 0, n <= region.length {
                region.shrink(to: n)
                reply("ok")
            } else {
                reply("error unknown command")
            }
        }
        // The daemon closed the pipe: it is gone or done with us.
        exit(0)
    }

    static func reply(_ text: String) {
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
    }
}

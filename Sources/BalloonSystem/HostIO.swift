import CBalloonShim
import Glibc
import SystemPackage

/// Small blocking-I/O helpers for the host side (balloonctl and its library):
/// waiting with a timeout, writing without SIGPIPE, terminals, and an
/// interrupt (SIGINT/SIGTERM) that can be waited on like a descriptor.
public enum HostIO {
    /// Waits until `fd` is readable (or has hung up / errored: a read will
    /// then say what happened). Returns false when the timeout passed first.
    /// A negative timeout waits forever. EINTR counts as "not yet".
    public static func waitReadable(_ fd: Int32, timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let n = Glibc.poll(&p, 1, timeoutMilliseconds)
        if n < 0 {
            if errno == EINTR { return false }
            throw SystemError("poll", errno: Errno(rawValue: errno))
        }
        return n > 0
    }

    /// Reads what is there (blocking if nothing is); 0 means end of stream.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try syscall("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Writes every byte; on a socket with MSG_NOSIGNAL so a peer that went
    /// away is an EPIPE error rather than a fatal SIGPIPE.
    public static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let remaining = bytes.count - offset
            let start = offset
            var sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + start, remaining, Int32(MSG_NOSIGNAL)) }
            if sent < 0 && errno == ENOTSOCK {
                sent = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + start, remaining) }
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw SystemError("send", errno: Errno(rawValue: errno))
            }
            offset += sent
        }
    }

    /// Writes text to a standard stream (1 or 2) unbuffered; errors are ignored
    /// (a closed pipe on stdout is not worth a crash).
    public static func write(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            bytes.removeFirst(n)
        }
    }

    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Sleeps for about `milliseconds` (used by tests' fake peers).
    public static func sleep(milliseconds: Int) {
        var ts = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var left = timespec()
        while nanosleep(&ts, &left) == -1 && errno == EINTR { ts = left }
    }
}

/// SIGINT and SIGTERM as a descriptor: blocked for normal delivery in the
/// calling thread, so create it before other threads exist. `wait` doubles as
/// an interruptible sleep.
public final class InterruptWatcher {
    private let signals: SignalDescriptor
    public private(set) var interrupted = false

    public init() throws(SystemError) {
        signals = try SignalDescriptor(signals: [SIGINT, SIGTERM])
    }

    /// Sleeps up to `timeoutMilliseconds`; true as soon as an interrupt arrives.
    public func wait(timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        if interrupted { return true }
        if try HostIO.waitReadable(signals.descriptor.raw, timeoutMilliseconds: timeoutMilliseconds) {
            while signals.next() != nil { interrupted = true }
        }
        return interrupted
    }
}

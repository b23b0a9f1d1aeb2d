// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc
import SystemPackage

/// The standard streams, which a process writes to but does not own.
package enum StandardStream: Int32, Sendable {
    case input = 0, output = 1, error = 2
}

/// Small blocking-I/O helpers for the host side (balloonctl and its library):
/// waiting with a timeout, writing without SIGPIPE, terminals, and an
/// interrupt (SIGINT/SIGTERM) that can be waited on like a descriptor.
package enum HostIO {
    /// Waits until `fd` is readable (or has hung up / errored: a read will
    /// then say what happened). Returns false when the timeout passed first.
    /// A nil timeout waits forever. EINTR counts as "not yet".
    package static func waitReadable(_ fd: Descriptor, timeout: Duration?) throws(SystemError) -> Bool {
        try waitReadable(raw: fd.raw, timeout: timeout)
    }

    static func waitReadable(raw fd: Int32, timeout: Duration?) throws(SystemError) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = pollTimeout(timeout)
        switch funnel({ "poll" }, retryingEINTR: false, { Glibc.poll(&p, 1, milliseconds) }) {
        case .success(let n): return n > 0
        case .failure(let code) where code == .interrupted: return false
        case .failure(let code): throw SystemError("poll", errno: code)
        }
    }

    /// Reads what is there (blocking if nothing is); 0 means end of stream.
    package static func read(_ fd: Descriptor, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try syscall("read") { Glibc.read(fd.raw, buffer.baseAddress, buffer.count) }
    }

    /// Writes every byte; on a socket with MSG_NOSIGNAL so a peer that went
    /// away is an EPIPE error rather than a fatal SIGPIPE.
    package static func sendAll(_ fd: Descriptor, _ bytes: [UInt8]) throws(SystemError) {
        try sendAll(raw: fd.raw, bytes)
    }

    static func sendAll(raw fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        var isSocket = true
        while offset < bytes.count {
            let remaining = bytes.count - offset
            let start = offset
            if isSocket {
                switch funnel({ "send" }, { bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + start, remaining, Int32(MSG_NOSIGNAL)) } }) {
                case .success(let sent): offset += sent
                case .failure(let code) where code == .notSocket: isSocket = false  // a pipe or file: write(2)
                case .failure(let code): throw SystemError("send", errno: code)
                }
            } else {
                offset += try syscall("write") { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + start, remaining) } }
            }
        }
    }

    /// Writes text to a standard stream unbuffered; errors are ignored (a
    /// closed pipe on stdout is not worth a crash).
    package static func write(_ text: String, to stream: StandardStream) {
        var bytes = Array(text.utf8)
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { buffer in
                // Not ours: it may have been closed before we started (EBADF).
                funnel({ "write" }, tolerating: [.badFileDescriptor]) { Glibc.write(stream.rawValue, buffer.baseAddress, buffer.count) }
            }
            guard case .success(let written) = n else { return }  // EPIPE and the like: nobody is reading
            bytes.removeFirst(written)
        }
    }

    package static func isTerminal(_ stream: StandardStream) -> Bool { isatty(stream.rawValue) == 1 }

    /// Sleeps for about `duration` (used by tests' fake peers).
    package static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = max(duration, .zero).components
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var left = timespec()
        // nanosleep reports EINTR with the time left in `left`: sleep the rest.
        while case .failure = funnel({ "nanosleep" }, retryingEINTR: false, { nanosleep(&ts, &left) }) { ts = left }
    }
}

/// SIGINT and SIGTERM as a descriptor: blocked for normal delivery in the
/// calling thread, so create it before other threads exist. `wait` doubles as
/// an interruptible sleep.
package final class InterruptWatcher {
    private let signals: SignalDescriptor
    package private(set) var interrupted = false

    package init() throws(SystemError) {
        signals = try SignalDescriptor(signals: [SIGINT, SIGTERM])
    }

    /// Sleeps up to `timeout`; true as soon as an interrupt arrives.
    package func wait(timeout: Duration) throws(SystemError) -> Bool {
        if interrupted { return true }
        if try HostIO.waitReadable(signals.descriptor, timeout: timeout) {
            while signals.next() != nil { interrupted = true }
        }
        return interrupted
    }
}

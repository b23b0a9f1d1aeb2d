// SPDX-License-Identifier: Apache-2.0
import Glibc
import SystemPackage

/// A failed system operation: which call, on what, and why — the errno the
/// kernel returned, or a failure of BalloonSystem's own that no syscall
/// reported (never dressed up as an errno).
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    package var operation: String
    package var subject: String?
    package var cause: Cause

    /// Why the operation failed.
    package enum Cause: Sendable, Equatable, CustomStringConvertible {
        /// The call returned -1 with this errno.
        case errno(Errno)
        /// A path meant for a socket is taken by something else.
        case notASocket
        /// A unix socket path has a live listener; it is not replaced.
        case socketInUse
        /// An offset or length beyond what the call can express (off_t).
        case outOfRange
        /// A balloon holder process ended without answering.
        case holderExited(answer: String?)
        /// A chunk lock ended early because a pressure trigger fired first.
        case lockInterrupted
        /// A chunk lock ended early because the host lowered the target
        /// below what the lock would have held.
        case lockYielded

        package var description: String {
            switch self {
            case .errno(let code): "\(code)"
            case .notASocket: "exists and is not a socket"
            case .socketInUse: "another process is listening"
            case .outOfRange: "offset or length out of range"
            case .holderExited(let answer): "the holder process exited (\(answer ?? "no answer"))"
            case .lockInterrupted: "a pressure trigger fired first; what was locked went back"
            case .lockYielded: "the host lowered the target first; what was locked went back"
            }
        }
    }

    package init(_ operation: String, subject: String? = nil, cause: Cause) {
        self.operation = operation
        self.subject = subject
        self.cause = cause
    }

    package init(_ operation: String, subject: String? = nil, errno: Errno) {
        self.init(operation, subject: subject, cause: .errno(errno))
    }

    /// The errno of a failed call; nil for a failure that is not a syscall's.
    package var errno: Errno? {
        if case .errno(let code) = cause { return code }
        return nil
    }

    /// The errno's number, for a wire field (nil as `errno`).
    package var errnoCode: Int32? { errno?.rawValue }

    /// Whether the file system cannot do the call at all (EOPNOTSUPP).
    package var isUnsupported: Bool { errno == .notSupported }

    /// Whether the call was not permitted (EPERM, EACCES).
    package var isDenied: Bool { errno == .notPermitted || errno == .permissionDenied }

    /// Whether the call failed because the file may not be written: EPERM
    /// (immutable, sealed), EROFS (read-only mount) or EACCES.
    package var deniesWriting: Bool {
        guard let errno else { return false }
        return [.notPermitted, .readOnlyFileSystem, .permissionDenied].contains(errno)
    }

    public var description: String {
        let what = subject.map { "\(operation) \($0)" } ?? operation
        return "\(what): \(cause)"
    }
}

/// What a failed call's errno means to the funnel.
package enum ErrnoClass: Sendable, Equatable {
    /// EINTR: a signal arrived; the call is made again.
    case interrupted
    /// EAGAIN/EWOULDBLOCK: nothing to do now on a non-blocking descriptor.
    case wouldBlock
    /// EBADF/EFAULT: the process passed a descriptor or address it does not
    /// own; its state is corrupt, so it stops, naming the call.
    case programmingError
    /// Anything else: an ordinary failure for the caller to handle.
    case failure

    package init(_ code: Errno) {
        switch code {
        case .interrupted: self = .interrupted
        case .resourceTemporarilyUnavailable, .wouldBlock: self = .wouldBlock
        case .badFileDescriptor, .badAddress: self = .programmingError
        default: self = .failure
        }
    }
}

/// The funnel's core: runs `body` until it returns something other than -1
/// or fails with an errno other than EINTR (unless `retryingEINTR` is false,
/// as close(2) needs); stops the process on a programming error unless
/// `tolerated` lists it (a descriptor the process does not own, like stdout).
@inline(__always)
func funnel<T: FixedWidthInteger>(
    _ operation: () -> String, retryingEINTR: Bool = true, tolerating tolerated: [Errno] = [], _ body: () -> T
) -> Result<T, Errno> {
    while true {
        let result = body()
        if result != -1 { return .success(result) }
        let code = Errno(rawValue: Glibc.errno)
        if tolerated.contains(code) { return .failure(code) }
        switch ErrnoClass(code) {
        case .interrupted where retryingEINTR: continue
        case .programmingError: programmingError(operation(), code)
        default: return .failure(code)
        }
    }
}

/// Stops the process: a bad descriptor or address means its own state is
/// wrong, and carrying on would act on someone else's descriptor or memory.
func programmingError(_ operation: String, _ code: Errno) -> Never {
    fatalError("\(operation): \(code) (\(code == .badFileDescriptor ? "EBADF" : "EFAULT")): a programming error in balloond")
}

/// The one funnel for syscalls that return -1 and set errno: retries EINTR,
/// stops on EBADF/EFAULT, and turns any other failure into a `SystemError`
/// naming the call.
@inline(__always)
package func syscall<T: FixedWidthInteger>(
    _ operation: @autoclosure () -> String,
    subject: @autoclosure () -> String? = nil,
    _ body: () -> T
) throws(SystemError) -> T {
    switch funnel(operation, body) {
    case .success(let value): return value
    case .failure(let code): throw SystemError(operation(), subject: subject(), errno: code)
    }
}

/// Like `syscall`, but `EAGAIN`/`EWOULDBLOCK` is an ordinary outcome (nil).
@inline(__always)
package func nonBlockingSyscall<T: FixedWidthInteger>(
    _ operation: @autoclosure () -> String,
    subject: @autoclosure () -> String? = nil,
    _ body: () -> T
) throws(SystemError) -> T? {
    switch funnel(operation, body) {
    case .success(let value): return value
    case .failure(let code) where ErrnoClass(code) == .wouldBlock: return nil
    case .failure(let code): throw SystemError(operation(), subject: subject(), errno: code)
    }
}

/// For calls whose failure the caller can do nothing about (cleanup, optional
/// advice, best-effort wakeups): still retries EINTR and stops on a
/// programming error unless `tolerating` names it; returns the errno, if any.
@inline(__always) @discardableResult
func bestEffortSyscall<T: FixedWidthInteger>(
    _ operation: @autoclosure () -> String,
    tolerating tolerated: [Errno] = [],
    retryingEINTR: Bool = true,
    _ body: () -> T
) -> Errno? {
    if case .failure(let code) = funnel(operation, retryingEINTR: retryingEINTR, tolerating: tolerated, body) { return code }
    return nil
}

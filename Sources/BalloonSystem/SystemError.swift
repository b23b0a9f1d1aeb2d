import Glibc
import SystemPackage

/// A failed system call: which call, on what, and the errno it returned.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public var operation: String
    public var subject: String?
    public var errno: Errno

    public init(_ operation: String, subject: String? = nil, errno: Errno) {
        self.operation = operation
        self.subject = subject
        self.errno = errno
    }

    public var description: String {
        let what = subject.map { "\(operation) \($0)" } ?? operation
        return "\(what): \(errno)"
    }
}

/// The one funnel for syscalls that return -1 and set errno: retries EINTR
/// and turns any other failure into a `SystemError` naming the call.
@inline(__always)
public func syscall<T: FixedWidthInteger>(
    _ operation: @autoclosure () -> String,
    subject: @autoclosure () -> String? = nil,
    _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(operation(), subject: subject(), errno: Errno(rawValue: code))
    }
}

/// Like `syscall`, but `EAGAIN`/`EWOULDBLOCK` is an ordinary outcome (nil).
@inline(__always)
public func nonBlockingSyscall<T: FixedWidthInteger>(
    _ operation: @autoclosure () -> String,
    _ body: () -> T
) throws(SystemError) -> T? {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        if code == EAGAIN || code == EWOULDBLOCK { return nil }
        throw SystemError(operation(), errno: Errno(rawValue: code))
    }
}

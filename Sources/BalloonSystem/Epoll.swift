import CBalloonShim
import Glibc

/// Readiness bits as epoll reports them.
public struct EpollEvents: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readable = EpollEvents(rawValue: cballoon_EPOLLIN)
    public static let writable = EpollEvents(rawValue: cballoon_EPOLLOUT)
    public static let priority = EpollEvents(rawValue: cballoon_EPOLLPRI)
    public static let error = EpollEvents(rawValue: cballoon_EPOLLERR)
    public static let hangup = EpollEvents(rawValue: cballoon_EPOLLHUP)
    public static let peerClosed = EpollEvents(rawValue: cballoon_EPOLLRDHUP)
}

/// An epoll instance. Registrations carry a caller-chosen 64-bit token.
public final class Epoll {
    public let descriptor: Descriptor

    public init() throws(SystemError) {
        descriptor = Descriptor(adopting: try syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
    }

    public func add(_ fd: Int32, events: EpollEvents, token: UInt64) throws(SystemError) {
        _ = try syscall("epoll_ctl(ADD)") { cballoon_epoll_ctl(descriptor.raw, EPOLL_CTL_ADD, fd, events.rawValue, token) }
    }

    public func modify(_ fd: Int32, events: EpollEvents, token: UInt64) throws(SystemError) {
        _ = try syscall("epoll_ctl(MOD)") { cballoon_epoll_ctl(descriptor.raw, EPOLL_CTL_MOD, fd, events.rawValue, token) }
    }

    /// Removes a registration; a descriptor that is already gone is not an error.
    public func remove(_ fd: Int32) {
        _ = cballoon_epoll_ctl(descriptor.raw, EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever). EINTR returns no events.
    public func wait(timeoutMilliseconds: Int32, max: Int = 32) throws(SystemError) -> [(token: UInt64, events: EpollEvents)] {
        let count = min(max, 64)
        var evs = [UInt32](repeating: 0, count: count)
        var data = [UInt64](repeating: 0, count: count)
        let n = cballoon_epoll_wait(descriptor.raw, &evs, &data, Int32(count), timeoutMilliseconds)
        if n < 0 {
            if errno == EINTR { return [] }
            throw SystemError("epoll_wait", errno: .init(rawValue: errno))
        }
        return (0..<Int(n)).map { (data[$0], EpollEvents(rawValue: evs[$0])) }
    }
}

/// A timerfd on CLOCK_MONOTONIC.
public final class TimerDescriptor {
    public let descriptor: Descriptor

    public init() throws(SystemError) {
        descriptor = Descriptor(adopting: try syscall("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        })
    }

    /// Arms the timer to fire once after `milliseconds` (0 disarms).
    public func arm(afterMilliseconds milliseconds: UInt64, repeating: Bool = false) throws(SystemError) {
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(milliseconds / 1000)
        spec.it_value.tv_nsec = Int(milliseconds % 1000) * 1_000_000
        if repeating { spec.it_interval = spec.it_value }
        _ = try syscall("timerfd_settime") { timerfd_settime(descriptor.raw, 0, &spec, nil) }
    }

    public func disarm() throws(SystemError) { try arm(afterMilliseconds: 0) }

    /// Consumes the expiration count (0 if it had not fired).
    @discardableResult
    public func acknowledge() -> UInt64 {
        var count: UInt64 = 0
        let n = Glibc.read(descriptor.raw, &count, 8)
        return n == 8 ? count : 0
    }
}

/// An eventfd, for waking the loop from another thread or a test.
public final class EventDescriptor {
    public let descriptor: Descriptor

    public init() throws(SystemError) {
        descriptor = Descriptor(adopting: try syscall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) })
    }

    public func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(descriptor.raw, &one, 8)
    }

    @discardableResult
    public func acknowledge() -> UInt64 {
        var count: UInt64 = 0
        return Glibc.read(descriptor.raw, &count, 8) == 8 ? count : 0
    }
}

/// Signals delivered as reads from a descriptor; they are blocked for normal
/// delivery in the calling thread (call before starting other threads).
public final class SignalDescriptor {
    public let descriptor: Descriptor

    public init(signals: [Int32]) throws(SystemError) {
        var set = sigset_t()
        _ = try syscall("pthread_sigmask") { signals.withUnsafeBufferPointer { cballoon_block_signals($0.baseAddress, Int32($0.count), &set) } }
        descriptor = Descriptor(adopting: try syscall("signalfd") {
            cballoon_signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        })
    }

    /// The next pending signal number, or nil.
    public func next() -> Int32? {
        var info = signalfd_siginfo()
        let n = Glibc.read(descriptor.raw, &info, MemoryLayout<signalfd_siginfo>.size)
        return n == MemoryLayout<signalfd_siginfo>.size ? Int32(info.ssi_signo) : nil
    }
}

// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc

/// Readiness bits as epoll reports them.
package struct EpollEvents: OptionSet, Sendable, Hashable {
    package let rawValue: UInt32
    package init(rawValue: UInt32) { self.rawValue = rawValue }
    package static let readable = EpollEvents(rawValue: cballoon_EPOLLIN)
    package static let writable = EpollEvents(rawValue: cballoon_EPOLLOUT)
    package static let priority = EpollEvents(rawValue: cballoon_EPOLLPRI)
    package static let error = EpollEvents(rawValue: cballoon_EPOLLERR)
    package static let hangup = EpollEvents(rawValue: cballoon_EPOLLHUP)
    package static let peerClosed = EpollEvents(rawValue: cballoon_EPOLLRDHUP)
}

/// An epoll instance. Registrations carry a caller-chosen 64-bit token.
package final class Epoll {
    package let descriptor: Descriptor
    /// The kernel's answer, kept between waits: an idle daemon wakes several
    /// times a second, and two arrays allocated per wait were a visible part
    /// of its CPU.
    private static let capacity = 64
    private let readyEvents = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity)
    private let readyTokens = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity)

    package init() throws(SystemError) {
        descriptor = Descriptor(adopting: try syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
    }

    deinit {
        readyEvents.deallocate()
        readyTokens.deallocate()
    }

    package func add(_ fd: Descriptor, events: EpollEvents, token: UInt64) throws(SystemError) {
        _ = try syscall("epoll_ctl(ADD)") { cballoon_epoll_ctl(descriptor.raw, EPOLL_CTL_ADD, fd.raw, events.rawValue, token) }
    }

    package func modify(_ fd: Descriptor, events: EpollEvents, token: UInt64) throws(SystemError) {
        _ = try syscall("epoll_ctl(MOD)") { cballoon_epoll_ctl(descriptor.raw, EPOLL_CTL_MOD, fd.raw, events.rawValue, token) }
    }

    /// Removes a registration; a descriptor that is already gone (closed:
    /// EBADF, or its number reused: ENOENT) is not an error.
    package func remove(_ fd: Descriptor) { remove(raw: fd.raw) }

    private func remove(raw fd: Int32) {
        bestEffortSyscall("epoll_ctl(DEL)", tolerating: [.badFileDescriptor]) {
            cballoon_epoll_ctl(descriptor.raw, EPOLL_CTL_DEL, fd, 0, 0)
        }
    }

    /// Waits up to `timeout` (nil: forever). EINTR returns no events, so the
    /// caller sees a signal's effects before waiting again.
    package func wait(timeout: Duration?, max: Int = 32) throws(SystemError) -> [(token: UInt64, events: EpollEvents)] {
        let timeoutMilliseconds = pollTimeout(timeout)
        let count = Swift.max(1, min(max, Self.capacity))
        let evs = readyEvents, data = readyTokens
        let n: Int32
        switch funnel({ "epoll_wait" }, retryingEINTR: false, { cballoon_epoll_wait(descriptor.raw, evs, data, Int32(count), timeoutMilliseconds) }) {
        case .success(let ready): n = ready
        case .failure(let code) where code == .interrupted: return []
        case .failure(let code): throw SystemError("epoll_wait", errno: code)
        }
        return (0..<Int(n)).map { (data[$0], EpollEvents(rawValue: evs[$0])) }
    }
}

/// A timerfd on CLOCK_MONOTONIC.
package final class TimerDescriptor {
    package let descriptor: Descriptor

    package init() throws(SystemError) {
        descriptor = Descriptor(adopting: try syscall("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        })
    }

    /// Arms the timer to fire once after `delay` (then every `delay` if
    /// `repeating`); zero disarms. Below a nanosecond counts as zero.
    package func arm(after delay: Duration, repeating: Bool = false) throws(SystemError) {
        let (seconds, attoseconds) = delay.components
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(max(seconds, 0))
        spec.it_value.tv_nsec = seconds < 0 ? 0 : Int(attoseconds / 1_000_000_000)
        if repeating { spec.it_interval = spec.it_value }
        _ = try syscall("timerfd_settime") { timerfd_settime(descriptor.raw, 0, &spec, nil) }
    }

    package func disarm() throws(SystemError) { try arm(after: .zero) }

    /// Fires every `interval` at the multiples of `interval` on
    /// CLOCK_MONOTONIC (the first within one interval); zero disarms. Timers
    /// armed this way whose intervals are multiples of one another expire at
    /// the same instants and wake the loop once: on a slow vCPU an idle
    /// daemon's cost is mostly its wakeups (the free-memory mode's 250 ms
    /// samples and the 1 s floor check are 4 a second, not 5).
    package func arm(every interval: Duration) throws(SystemError) {
        let step = interval.inNanoseconds
        guard step > 0 else { return try disarm() }
        let now = SystemClock.monotonic().inNanoseconds
        let first = (now / step + 1) * step
        func time(_ nanoseconds: UInt64) -> timespec {
            timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        }
        var spec = itimerspec(it_interval: time(step), it_value: time(first))
        _ = try syscall("timerfd_settime") { timerfd_settime(descriptor.raw, Int32(TFD_TIMER_ABSTIME), &spec, nil) }
    }

    /// Consumes the expiration count (0 if it had not fired).
    @discardableResult
    package func acknowledge() -> UInt64 {
        // A timerfd read fails only with EAGAIN (not fired) or ECANCELED (not
        // used here); either way nothing expired that the caller must act on.
        ((try? descriptor.readRecord(UInt64.self, "read(timerfd)")) ?? nil) ?? 0
    }
}

/// An eventfd, for waking the loop from another thread or a test.
package final class EventDescriptor {
    package let descriptor: Descriptor

    package init() throws(SystemError) {
        descriptor = Descriptor(adopting: try syscall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) })
    }

    /// Adds one; EAGAIN (the counter is at its maximum) still wakes the reader.
    package func signal() {
        var one: UInt64 = 1
        bestEffortSyscall("write(eventfd)") { Glibc.write(descriptor.raw, &one, 8) }
    }

    /// Takes the count (0 if nothing was signalled).
    @discardableResult
    package func acknowledge() -> UInt64 {
        // An eventfd read fails only with EAGAIN: nothing signalled.
        ((try? descriptor.readRecord(UInt64.self, "read(eventfd)")) ?? nil) ?? 0
    }
}

/// Signals delivered as reads from a descriptor; they are blocked for normal
/// delivery in the calling thread (call before starting other threads).
package final class SignalDescriptor {
    package let descriptor: Descriptor

    package init(signals: [Int32]) throws(SystemError) {
        var set = sigset_t()
        _ = try syscall("pthread_sigmask") { signals.withUnsafeBufferPointer { cballoon_block_signals($0.baseAddress, Int32($0.count), &set) } }
        descriptor = Descriptor(adopting: try syscall("signalfd") {
            cballoon_signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        })
    }

    /// The next pending signal number, or nil.
    package func next() -> Int32? {
        // A signalfd read fails only with EAGAIN: nothing pending.
        guard let info = (try? descriptor.readRecord(signalfd_siginfo.self, "read(signalfd)")) ?? nil else { return nil }
        return Int32(info.ssi_signo)
    }
}

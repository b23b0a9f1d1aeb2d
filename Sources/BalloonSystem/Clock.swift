// SPDX-License-Identifier: Apache-2.0
import Glibc

/// The one place the system clocks are read. Times are `Duration`s since
/// the clock's epoch: boot for the monotonic clock, 1970 for the wall clock.
public enum SystemClock {
    /// CLOCK_MONOTONIC: immune to wall-clock steps; the clock DEFLATED's
    /// `signal-at` and friends are in (as `clock_gettime` anywhere in the guest).
    public static func monotonic() -> Duration { read(CLOCK_MONOTONIC) }

    /// CLOCK_REALTIME: for event timestamps (QMP convention).
    public static func realtime() -> Duration { read(CLOCK_REALTIME) }

    private static func read(_ clock: clockid_t) -> Duration {
        var ts = timespec()
        // Fails only for an unknown clock or a bad pointer (EINVAL, EFAULT):
        // a programming error, so it stops the process naming the call.
        guard clock_gettime(clock, &ts) == 0 else { fatalError("clock_gettime(\(clock)): errno \(errno)") }
        return .seconds(Int64(ts.tv_sec)) + .nanoseconds(Int64(ts.tv_nsec))
    }
}

extension Duration {
    /// Whole milliseconds, rounded down; negative durations are 0.
    public var inMilliseconds: UInt64 { whole(per: 1_000) }
    /// Whole microseconds, rounded down; negative durations are 0.
    public var inMicroseconds: UInt64 { whole(per: 1_000_000) }
    /// Whole nanoseconds, rounded down; negative durations are 0.
    public var inNanoseconds: UInt64 { whole(per: 1_000_000_000) }

    private func whole(per second: UInt64) -> UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let (scaled, overflow) = UInt64(seconds).multipliedReportingOverflow(by: second)
        let fraction = UInt64(attoseconds) / (1_000_000_000_000_000_000 / second)
        return overflow ? .max : scaled &+ fraction
    }
}

/// A timeout as poll(2) and epoll_wait(2) take it: whole milliseconds rounded
/// up (a wait never ends early), at most Int32.max; nil is -1, forever.
func pollTimeout(_ timeout: Duration?) -> Int32 {
    guard let timeout else { return -1 }
    if timeout <= .zero { return 0 }
    let (seconds, attoseconds) = timeout.components
    return Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
}

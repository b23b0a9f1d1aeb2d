import BalloonController
import BalloonProtocol
import Glibc

/// CLOCK_MONOTONIC in milliseconds: immune to wall-clock steps.
public final class SystemMonotonicClock: MonotonicClock {
    public init() {}
    public var milliseconds: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}

/// Wall-clock time for event timestamps (QMP convention).
func wallClockTimestamp() -> Timestamp {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Timestamp(seconds: Int64(ts.tv_sec), microseconds: Int64(ts.tv_nsec / 1000))
}

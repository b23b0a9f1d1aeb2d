// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonProtocol
import BalloonSystem

/// CLOCK_MONOTONIC for the controller and the frame reporter.
public final class SystemMonotonicClock: MonotonicClock {
    public init() {}
    public var now: Duration { SystemClock.monotonic() }
}

extension MonotonicTimestamp {
    init(_ monotonic: Duration) { self.init(microseconds: monotonic.inMicroseconds) }
}

/// Wall-clock time for event timestamps (QMP convention).
func wallClockTimestamp() -> Timestamp {
    let (seconds, attoseconds) = SystemClock.realtime().components
    return Timestamp(seconds: seconds, microseconds: attoseconds / 1_000_000_000_000)
}

// SPDX-License-Identifier: Apache-2.0

/// QMP's asynchronous events this server sends.
public enum QMPEvent {
    /// `BALLOON_CHANGE` with `actual`, the guest's logical size (RAM −
    /// balloon), stamped with the host's wall-clock time when it happened
    /// (QEMU stamps an event when it is raised, so a delayed one keeps it).
    public static func balloonChange(actual: UInt64, at time: Duration) -> JSON {
        let (seconds, attoseconds) = time.components
        return [
            "timestamp": ["seconds": .int(seconds), "microseconds": .int(attoseconds / 1_000_000_000_000)],
            "event": "BALLOON_CHANGE",
            "data": ["actual": .uint(actual)],
        ]
    }
}

/// QEMU's event throttle (monitor/monitor.c, BALLOON_CHANGE's rate 1 s):
/// the first event goes out at once and opens a one-second window; events
/// in the window replace each other (the last one wins) and the survivor
/// goes out when the window ends, opening another; a window that ends with
/// nothing pending closes. Pure: driven by the caller's monotonic clock.
public struct QMPEventLimiter: Sendable {
    public static let period: Duration = .seconds(1)

    public let period: Duration
    /// When the open window ends; nil: no window, the next event goes out at once.
    public private(set) var deadline: Duration?
    private var pending: JSON?

    public init(period: Duration = QMPEventLimiter.period) { self.period = period }

    /// An event raised at `now`: returned if it goes out now, else held.
    public mutating func offer(_ event: JSON, now: Duration) -> JSON? {
        if deadline != nil {
            pending = event
            return nil
        }
        deadline = now + period
        return event
    }

    /// The window's end (the timer fired at `now` ≥ `deadline`): the held
    /// event, if any, goes out and opens the next window.
    public mutating func expire(now: Duration) -> JSON? {
        guard let end = deadline, now >= end else { return nil }
        guard let event = pending else {
            deadline = nil
            return nil
        }
        pending = nil
        deadline = now + period
        return event
    }
}

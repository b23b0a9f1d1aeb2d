// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// Why the balloon stops short of the host's target, with what the
/// controller decides on; the host sees it as the protocol's `StopReason`.
enum Shortfall: Sendable, Equatable {
    /// The target exceeds the configured maximum balloon.
    case maxBalloon(limit: UInt64)
    /// Inflating further would take MemAvailable below the floor.
    case availableFloor(floor: UInt64, available: UInt64)
    /// The kernel refused memory (mmap or mlock failed).
    case reserveFailed(ReserveError)
    /// Memory pressure: the balloon gave memory back and waits for a quiet
    /// period before growing again.
    case pressure(ceiling: UInt64, quietUntil: Duration)

    var stopReason: StopReason {
        switch self {
        case let .maxBalloon(limit):
            StopReason(code: .maxBalloon, desc: "the target exceeds the maximum balloon of \(limit) bytes (MaxBalloon=)")
        case let .availableFloor(floor, available):
            StopReason(code: .memAvailableFloor, desc: "inflating further would take MemAvailable (\(available) bytes) within 16 MiB of the floor of \(floor) bytes (MemAvailableFloor=)")
        case let .reserveFailed(error):
            StopReason(code: .reserveFailed, desc: "the kernel refused memory: \(error)")
        case let .pressure(ceiling, _):
            StopReason(code: .pressure, desc: "memory pressure: the balloon is held at \(ceiling) bytes until the guest has been quiet for the quiet period (FirstQuietPeriod=, doubling up to QuietPeriod=)")
        }
    }
}

/// The balloon's state as `query` reports it.
public typealias BalloonState = QueryReply.State

public enum TargetError: Error, Sendable, Equatable, CustomStringConvertible {
    case exceedsMemory(target: UInt64, memoryTotal: UInt64)
    public var description: String {
        switch self {
        case let .exceedsMemory(target, total):
            "target \(target) bytes exceeds the guest's memory of \(total) bytes"
        }
    }
}

/// What the caller should do after `step()`.
public enum StepOutcome: Sendable, Equatable {
    /// More work: service pending I/O, then call `step()` again.
    case more
    /// Nothing to do until this time on the controller's clock (a retry),
    /// unless something changes.
    case waitUntil(Duration)
    /// Settled; no timer needed.
    case idle
}

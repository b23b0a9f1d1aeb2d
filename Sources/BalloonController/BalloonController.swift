/// Why the balloon stops short of the host's target.
public enum UnreachableReason: Sendable, Equatable {
    /// The target exceeds the configured maximum balloon.
    case maxBalloon(limit: UInt64)
    /// Inflating further would take MemAvailable below the floor.
    case availableFloor(floor: UInt64, available: UInt64)
    /// The kernel refused memory (mmap or mlock failed).
    case reserveFailed(String)

    public var code: String {
        switch self {
        case .maxBalloon: "max-balloon"
        case .availableFloor: "mem-available-floor"
        case .reserveFailed: "reserve-failed"
        }
    }

    public var desc: String {
        switch self {
        case let .maxBalloon(limit): "the target exceeds the maximum balloon of \(limit) bytes (MaxBalloon=)"
        case let .availableFloor(floor, available):
            "inflating further would take MemAvailable (\(available) bytes) below the floor of \(floor) bytes (MemAvailableFloor=)"
        case let .reserveFailed(why): "the kernel refused memory: \(why)"
        }
    }

    /// Conditions that can clear by themselves are retried on a timer.
    var isTransient: Bool {
        if case .maxBalloon = self { return false }
        return true
    }
}

public enum BalloonState: String, Sendable {
    case idle, inflating, deflating, unreachable
}

/// What the host is told, in order (docs/protocol.md, "Events").
public enum ControllerEvent: Sendable, Equatable {
    case balloonChange(actual: UInt64, target: UInt64)
    case targetReached(actual: UInt64, target: UInt64)
    case targetUnreachable(actual: UInt64, target: UInt64, reason: UnreachableReason)
}

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
    /// Nothing to do until this monotonic time (a retry), unless something changes.
    case waitUntil(UInt64)
    /// Settled; no timer needed.
    case idle
}

/// Moves the balloon toward the host's target one chunk per step, so a new
/// target or a signal can preempt a large inflation between steps. Pure: all
/// effects go through the reserver; time comes from the clock.
public final class BalloonController {
    public static let changeEventInterval: UInt64 = 1000
    public static let retryInterval: UInt64 = 5000

    public private(set) var limits: BalloonLimits
    /// The host's target (page-rounded).
    public private(set) var target: UInt64 = 0
    /// Why the balloon is short of the target now, if it is and will stay so.
    public private(set) var blockedBy: UnreachableReason?

    private let clock: MonotonicClock
    private let probe: MemoryProbe
    private let reserver: MemoryReserver
    private var retryAt: UInt64?
    private var lastChangeEventAt: UInt64?
    private var moved = false
    /// Set by a new target: the next settle is announced even if nothing moved.
    private var announcePending = false
    private var lastAnnounced: ControllerEvent?
    /// The last BALLOON_CHANGE produced, so arrival does not repeat it.
    private var lastChange: ControllerEvent?
    private var events: [ControllerEvent] = []

    public init(limits: BalloonLimits, clock: MonotonicClock, probe: MemoryProbe, reserver: MemoryReserver) {
        self.limits = limits
        self.clock = clock
        self.probe = probe
        self.reserver = reserver
    }

    public var actual: UInt64 { reserver.heldBytes }

    /// The target clamped to the maximum balloon.
    public var effectiveTarget: UInt64 { min(target, limits.maxBalloon) }

    /// Why actual will differ from target, once settled; nil if it will match.
    public var reason: UnreachableReason? {
        if let blockedBy { return blockedBy }
        if target > limits.maxBalloon { return .maxBalloon(limit: limits.maxBalloon) }
        return nil
    }

    public var state: BalloonState {
        let actual = self.actual
        if actual < effectiveTarget { return blockedBy == nil ? .inflating : .unreachable }
        if actual > effectiveTarget { return .deflating }
        return target > effectiveTarget ? .unreachable : .idle
    }

    /// Sets the host's target; returns it page-rounded. Above MemTotal is an
    /// error; above the maximum balloon is clamped (see `effectiveTarget`).
    @discardableResult
    public func setTarget(_ bytes: UInt64) throws(TargetError) -> UInt64 {
        guard bytes <= limits.memoryTotal else {
            throw .exceedsMemory(target: bytes, memoryTotal: limits.memoryTotal)
        }
        target = bytes / limits.pageSize * limits.pageSize
        blockedBy = nil
        retryAt = nil
        announcePending = true
        return target
    }

    /// New limits after a configuration reload; the balloon follows at once.
    public func updateLimits(_ newLimits: BalloonLimits) {
        limits = newLimits
        blockedBy = nil
        retryAt = nil
        announcePending = true
    }

    /// Events produced since the last call, in order.
    public func takeEvents() -> [ControllerEvent] {
        defer { events.removeAll() }
        return events
    }

    /// Does at most one chunk of work.
    public func step() -> StepOutcome {
        let now = clock.milliseconds
        if let retryAt {
            if now < retryAt { return .waitUntil(retryAt) }
            self.retryAt = nil
            blockedBy = nil
        }
        let actual = self.actual
        let goal = effectiveTarget
        if actual > goal {
            reserver.shrink(by: min(limits.chunkSize, actual - goal))
            noteMovement(now)
            return .more
        }
        if actual < goal {
            switch inflateOnce(toward: goal, from: actual) {
            case .moved:
                noteMovement(now)
                return .more
            case let .blocked(reason):
                blockedBy = reason
                retryAt = now + Self.retryInterval
                settle()
                return .waitUntil(now + Self.retryInterval)
            }
        }
        settle()
        return .idle
    }

    private enum InflateResult { case moved, blocked(UnreachableReason) }

    private func inflateOnce(toward goal: UInt64, from actual: UInt64) -> InflateResult {
        var size = min(limits.chunkSize, goal - actual)
        // MemAvailable drops by what we lock; never let it cross the floor.
        if let available = probe.availableBytes() {
            let room = available > limits.availableFloor ? available - limits.availableFloor : 0
            if room < size {
                size = room / limits.pageSize * limits.pageSize
                if size == 0 { return .blocked(.availableFloor(floor: limits.availableFloor, available: available)) }
            }
        }
        do {
            try reserver.grow(by: size)
        } catch {
            return .blocked(.reserveFailed(error.description))
        }
        return .moved
    }

    private func noteMovement(_ now: UInt64) {
        moved = true
        if let last = lastChangeEventAt, now - last < Self.changeEventInterval { return }
        lastChangeEventAt = now
        emitChange()
    }

    private func emitChange() {
        let change = ControllerEvent.balloonChange(actual: actual, target: target)
        events.append(change)
        lastChange = change
    }

    /// Announces arrival: a final BALLOON_CHANGE, then reached or unreachable.
    private func settle() {
        let actual = self.actual
        let verdict: ControllerEvent = if let reason {
            .targetUnreachable(actual: actual, target: target, reason: reason)
        } else {
            .targetReached(actual: actual, target: target)
        }
        // A retry that ends the same way as before is not news.
        guard moved || announcePending || !sameOutcome(verdict, lastAnnounced) else { return }
        // Arrival repeats the last BALLOON_CHANGE only if it was not already said.
        if lastChange != .balloonChange(actual: actual, target: target) || !moved { emitChange() }
        events.append(verdict)
        lastChangeEventAt = clock.milliseconds
        lastAnnounced = verdict
        moved = false
        announcePending = false
    }

    private func sameOutcome(_ a: ControllerEvent, _ b: ControllerEvent?) -> Bool {
        switch (a, b) {
        case let (.targetReached(x, t), .targetReached(y, u)?): return x == y && t == u
        case let (.targetUnreachable(x, t, r), .targetUnreachable(y, u, s)?): return x == y && t == u && r.code == s.code
        default: return false
        }
    }
}

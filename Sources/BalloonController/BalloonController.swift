// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// Moves the balloon toward the host's target one chunk per step, so a new
/// target or a signal can preempt a large inflation between steps. Pure: all
/// effects go through the reserver; time comes from the clock.
///
/// Its events (docs/protocol.md, "Events") queue in order with any others
/// the daemon's parts `post` (the frame reporter's `FRAMES_*`), and leave
/// through `takeEvents()`.
public final class BalloonController {
    public static let changeEventInterval: Duration = .seconds(1)
    public static let retryInterval: Duration = .seconds(5)

    public private(set) var limits: BalloonLimits
    /// The host's target (page-rounded).
    public private(set) var target: UInt64 = 0
    /// Why the balloon is short of the target now, if it is and will stay so.
    private(set) var blockedBy: Shortfall?

    let clock: MonotonicClock
    let probe: MemoryProbe
    let reserver: MemoryReserver
    private var retryAt: Duration?
    private var lastChangeEventAt: Duration?
    private var moved = false
    /// Set by a new target: the next settle is announced even if nothing moved.
    private var announcePending = false
    private var lastAnnounced: GuestEvent?
    /// The last BALLOON_CHANGE produced, so arrival does not repeat it.
    private var lastChange: GuestEvent?
    private var events: [GuestEvent] = []

    public var policy = PressurePolicy()
    /// The free-memory mode's sizing, while the mode is on (FreeMemory.swift).
    public internal(set) var freeMemory: FreeMemorySizer?
    /// While set, the balloon may not grow above this (pressure backoff).
    public internal(set) var pressureCeiling: UInt64?
    /// When the ceiling lifts if no further pressure arrives.
    public internal(set) var quietUntil: Duration?
    /// The current stall's quiet period and when it ends (or ended), for
    /// the next one's length (Pressure.swift, `stallHold`).
    public internal(set) var stallHoldLength: Duration?
    var stallHoldUntil: Duration?
    /// Until when the free-memory mode may not grow past the pressure
    /// ceiling: shorter than `quietUntil` after a floor deflate (Pressure.swift).
    public internal(set) var freeMemoryQuietUntil: Duration?
    /// How regrowth into free memory is sized during a backoff; nil: the
    /// backoff holds the host's part for the whole quiet period (Regrowth.swift).
    public var regrowthPolicy: FreeMemoryPolicy?
    /// During a backoff: how far the host's part may regrow into free memory.
    public internal(set) var regrowth: FreeMemorySizer?
    /// A stall undid regrowth: none before this (a later stall pushes it
    /// out); nil while regrowth may go on (Regrowth.swift).
    var regrowthResumesAt: Duration?
    /// The latest wait after an undo, and when regrowth last resumed after
    /// one: an undo soon after that doubles the wait (Regrowth.swift).
    var regrowthWaitLength: Duration?
    var regrowthResumedAt: Duration?
    /// Last time the balloon grew.
    public private(set) var lastGrowthAt: Duration?
    /// The last PSI signal blamed on growth, until its stall is measured
    /// again (StallRecheck.swift) or a later signal is answered.
    public internal(set) var blamedStall: BlamedStall?
    /// Totals for `query`.
    public private(set) var pressureDeflatedBytes: UInt64 = 0
    public private(set) var lastDeflate: (bytes: UInt64, reason: PressureSignal, at: Duration)?

    public init(limits: BalloonLimits, clock: MonotonicClock, probe: MemoryProbe, reserver: MemoryReserver) {
        self.limits = limits
        self.clock = clock
        self.probe = probe
        self.reserver = reserver
    }

    public var actual: UInt64 { reserver.heldBytes }

    /// The larger of the host's target and the free-memory mode's, clamped
    /// to the maximum balloon. A pressure ceiling caps the host's part for the
    /// whole quiet period (raised by regrowth into free memory: `hostCeiling`),
    /// the mode's part only while it is held back (`freeMemoryHeldBack`).
    public var effectiveTarget: UInt64 {
        let ceiling = pressureCeiling ?? .max
        let mode = freeMemoryHeldBack ? min(freeMemoryTarget, ceiling) : freeMemoryTarget
        return min(max(min(target, hostCeiling ?? .max), mode), limits.maxBalloon)
    }

    var shortfall: Shortfall? {
        if let blockedBy { return blockedBy }
        if let ceiling = hostCeiling, ceiling < min(target, limits.maxBalloon) {
            return .pressure(ceiling: ceiling, quietUntil: quietUntil ?? .zero)
        }
        if target > limits.maxBalloon { return .maxBalloon(limit: limits.maxBalloon) }
        return nil
    }

    /// Why actual will differ from target, once settled; nil if it will match.
    public var reason: StopReason? { shortfall?.stopReason }

    /// Why the last inflation failed, while it blocks the balloon: the
    /// reserver's error with its cause (EAGAIN and ENOMEM differ).
    public var reserveFailure: ReserveError? {
        if case let .reserveFailed(error)? = blockedBy { return error }
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

    /// Quiet long enough: grow toward the targets again. The step does it, and
    /// the free-memory mode's samples do too: with a host target of 0 nothing
    /// else would step the controller when the quiet period ends.
    func liftExpiredBackoff(_ now: Duration) {
        guard let quiet = quietUntil, now >= quiet else { return }
        quietUntil = nil
        freeMemoryQuietUntil = nil
        pressureCeiling = nil
        regrowth = nil
        regrowthResumesAt = nil
        regrowthWaitLength = nil
        regrowthResumedAt = nil
        announcePending = true
    }

    /// A goal changed other than by the host (the free-memory mode): a
    /// pending retry must not delay it.
    func wake() {
        blockedBy = nil
        retryAt = nil
    }

    /// Queues an event another part produced (the frame reporter's), in
    /// order with the controller's own.
    public func post(_ event: GuestEvent) { events.append(event) }

    /// Events produced since the last call, in order.
    public func takeEvents() -> [GuestEvent] {
        defer { events.removeAll() }
        return events
    }

    /// Does at most one chunk of work.
    public func step() -> StepOutcome {
        let now = clock.now
        liftExpiredBackoff(now)
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
            case .interrupted:
                // Nothing moved and nothing is refused: the signal that ended
                // the lock is the daemon's to answer before the next step.
                return .more
            case let .blocked(reason):
                blockedBy = reason
                retryAt = now + Self.retryInterval
                settle()
                return .waitUntil(now + Self.retryInterval)
            }
        }
        settle()
        if let quiet = quietUntil, hostCeiling.map({ $0 < min(target, limits.maxBalloon) }) == true {
            return .waitUntil(quiet)
        }
        return .idle
    }

    func noteDeflate(_ bytes: UInt64, _ signal: PressureSignal, now: Duration, actual: UInt64) {
        pressureDeflatedBytes += bytes
        lastDeflate = (bytes, signal, now)
        events.append(.deflated(DeflatedEvent(bytes: bytes, reason: signal.reason, actual: actual, timing: nil)))
        moved = true
    }

    private enum InflateResult { case moved, interrupted, blocked(Shortfall) }

    /// The MemAvailable growth stops at: a little above the floor, below
    /// which pressure deflation starts.
    var growthStopLine: UInt64 { limits.availableFloor + min(policy.growthHeadroom, policy.floorMargin) }

    private func inflateOnce(toward goal: UInt64, from actual: UInt64) -> InflateResult {
        var size = min(limits.chunkSize, goal - actual)
        // MemAvailable drops by what we lock. Growth stops a little above the
        // floor, pressure deflation starts below it: the gap keeps ordinary
        // jitter (and the holders' own pages) from making the balloon deflate
        // because of its own growth.
        // Free memory the mode holds comes back as soon as the guest needs
        // it: it counts as available, so the mode's own growth (which takes
        // from MemAvailable what it adds to the held part) never hits the floor.
        if let available = probe.availableBytes().map({ $0 + freeMemoryHeld }) {
            let room = available > growthStopLine ? available - growthStopLine : 0
            if room < size {
                size = room / limits.pageSize * limits.pageSize
                if size == 0 { return .blocked(.availableFloor(floor: limits.availableFloor, available: available)) }
            }
        }
        do {
            try reserver.grow(by: size)
        } catch where error.kind == .interrupted {
            // The lock took memory until it was ended: a stall now is the growth's.
            lastGrowthAt = clock.now
            return .interrupted
        } catch {
            return .blocked(.reserveFailed(error))
        }
        lastGrowthAt = clock.now
        return .moved
    }

    private func noteMovement(_ now: Duration) {
        moved = true
        if let last = lastChangeEventAt, now - last < Self.changeEventInterval { return }
        lastChangeEventAt = now
        emitChange()
    }

    private func emitChange() {
        let change = GuestEvent.balloonChange(BalloonProgress(actual: actual, target: target))
        events.append(change)
        lastChange = change
    }

    /// Announces arrival: a final BALLOON_CHANGE, then reached or unreachable.
    private func settle() {
        let progress = BalloonProgress(actual: actual, target: target)
        let verdict: GuestEvent = if let reason { .targetUnreachable(progress, reason: reason) } else { .targetReached(progress) }
        // A retry that ends the same way as before is not news.
        guard moved || announcePending || !sameOutcome(verdict, lastAnnounced) else { return }
        // Arrival repeats the last BALLOON_CHANGE only if it was not already said.
        if lastChange != .balloonChange(progress) || !moved { emitChange() }
        events.append(verdict)
        lastChangeEventAt = clock.now
        lastAnnounced = verdict
        moved = false
        announcePending = false
    }

    private func sameOutcome(_ a: GuestEvent, _ b: GuestEvent?) -> Bool {
        switch (a, b) {
        case let (.targetReached(x), .targetReached(y)?): return x == y
        case let (.targetUnreachable(x, r), .targetUnreachable(y, s)?): return x == y && r.code == s.code
        default: return false
        }
    }
}

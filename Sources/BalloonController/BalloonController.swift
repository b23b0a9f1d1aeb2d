/// Why the balloon stops short of the host's target.
public enum UnreachableReason: Sendable, Equatable {
    /// The target exceeds the configured maximum balloon.
    case maxBalloon(limit: UInt64)
    /// Inflating further would take MemAvailable below the floor.
    case availableFloor(floor: UInt64, available: UInt64)
    /// The kernel refused memory (mmap or mlock failed).
    case reserveFailed(String)
    /// Memory pressure: the balloon gave memory back and waits for a quiet
    /// period before growing again.
    case pressure(ceiling: UInt64, quietUntil: UInt64)

    public var code: String {
        switch self {
        case .maxBalloon: "max-balloon"
        case .availableFloor: "mem-available-floor"
        case .reserveFailed: "reserve-failed"
        case .pressure: "pressure"
        }
    }

    public var desc: String {
        switch self {
        case let .maxBalloon(limit): "the target exceeds the maximum balloon of \(limit) bytes (MaxBalloon=)"
        case let .availableFloor(floor, available):
            "inflating further would take MemAvailable (\(available) bytes) within 16 MiB of the floor of \(floor) bytes (MemAvailableFloor=)"
        case let .reserveFailed(why): "the kernel refused memory: \(why)"
        case let .pressure(ceiling, _):
            "memory pressure: the balloon is held at \(ceiling) bytes until the guest has been quiet for the quiet period (QuietPeriod=)"
        }
    }

    /// Conditions that can clear by themselves are retried on a timer.
    var isTransient: Bool {
        switch self {
        case .maxBalloon, .pressure: false
        default: true
        }
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
    /// Memory given back because of pressure (or lost to the OOM killer).
    case deflated(bytes: UInt64, reason: PressureSignal, actual: UInt64)
}

/// What tells the daemon the guest needs memory back.
public enum PressureSignal: Sendable, Equatable {
    public enum Tier: String, Sendable, CaseIterable { case light, heavy, severe }
    /// A PSI trigger of this tier fired.
    case psi(Tier)
    /// MemAvailable fell below the floor.
    case belowFloor(available: UInt64)
    /// allocstall_* or pgscan_direct rose in /proc/vmstat: direct reclaim.
    case directReclaim
    /// oom_kill rose in /proc/vmstat: the kernel killed something.
    case oomKill
    /// A balloon holder process was killed (the OOM killer's last resort took
    /// balloon memory); the bytes are already gone.
    case holderKilled(bytes: UInt64)

    /// The reason named in DEFLATED events and logs.
    public var name: String {
        switch self {
        case let .psi(tier): "psi-\(tier.rawValue)"
        case .belowFloor: "mem-available-floor"
        case .directReclaim: "direct-reclaim"
        case .oomKill: "oom-kill"
        case .holderKilled: "holder-killed"
        }
    }
}

/// How the balloon answers pressure (the `[Pressure]` section).
public struct PressurePolicy: Sendable, Equatable {
    /// Share of the balloon a light signal gives back (at least one chunk).
    public var lightStepPercent: UInt64 = 10
    /// Below the floor, deflate until MemAvailable is floor + this.
    public var floorMargin: UInt64 = 64 << 20
    /// Growth stops this far above the floor: enough that jitter and the
    /// holders' own pages (about 1 MiB each) do not trip the floor check
    /// right after the balloon grew, small enough not to waste memory.
    public var growthHeadroom: UInt64 = 16 << 20
    /// No growth until the guest has been free of pressure this long.
    public var quietPeriod: UInt64 = 60_000
    /// Signals this soon after the balloon grew are blamed on the growth:
    /// nothing is deflated, and growth pauses for `selfInflictedPause`.
    public var selfInflictedWindow: UInt64 = 2_000
    /// The breather after a stall the balloon's own growth caused (faulting
    /// and zeroing pages, compaction). Pressure that is real outlasts it: the
    /// next signal then comes with no growth in the window and is answered
    /// in full, with the whole quiet period.
    public var selfInflictedPause: UInt64 = 5_000

    public init() {}
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

    public var policy = PressurePolicy()
    /// While set, the balloon may not grow above this (pressure backoff).
    public private(set) var pressureCeiling: UInt64?
    /// When the ceiling lifts if no further pressure arrives.
    public private(set) var quietUntil: UInt64?
    /// Last time the balloon grew (monotonic ms).
    public private(set) var lastGrowthAt: UInt64?
    /// Totals for `query`.
    public private(set) var pressureDeflatedBytes: UInt64 = 0
    public private(set) var lastDeflate: (bytes: UInt64, reason: PressureSignal, at: UInt64)?

    public init(limits: BalloonLimits, clock: MonotonicClock, probe: MemoryProbe, reserver: MemoryReserver) {
        self.limits = limits
        self.clock = clock
        self.probe = probe
        self.reserver = reserver
    }

    public var actual: UInt64 { reserver.heldBytes }

    /// The target clamped to the maximum balloon and any pressure ceiling.
    public var effectiveTarget: UInt64 { min(target, limits.maxBalloon, pressureCeiling ?? .max) }

    /// Why actual will differ from target, once settled; nil if it will match.
    public var reason: UnreachableReason? {
        if let blockedBy { return blockedBy }
        if let ceiling = pressureCeiling, ceiling < min(target, limits.maxBalloon) {
            return .pressure(ceiling: ceiling, quietUntil: quietUntil ?? 0)
        }
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
        if let quiet = quietUntil, now >= quiet {
            // Quiet long enough: grow toward the host's target again.
            quietUntil = nil
            pressureCeiling = nil
            announcePending = true
        }
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
        if let quiet = quietUntil, pressureCeiling.map({ $0 < min(target, limits.maxBalloon) }) == true {
            return .waitUntil(quiet)
        }
        return .idle
    }

    // MARK: - Pressure

    /// Answers a pressure signal at once: stops growth, starts (or extends)
    /// the quiet period, and gives memory back unless the signal is blamed on
    /// the balloon's own growth. Returns the bytes given back.
    @discardableResult
    public func pressure(_ signal: PressureSignal) -> UInt64 {
        let now = clock.milliseconds
        let actual = self.actual
        var amount: UInt64
        switch signal {
        case .psi(.light), .directReclaim:
            amount = max(actual / 100 * policy.lightStepPercent, limits.chunkSize)
        case .psi(.heavy):
            amount = max(actual / 2, limits.chunkSize)
        case .psi(.severe), .oomKill:
            amount = actual
        case let .belowFloor(available):
            let wanted = limits.availableFloor + policy.floorMargin
            amount = wanted > available ? roundUpToPage(wanted - available) : 0
        case let .holderKilled(bytes):
            // Already gone; account for it and hold where we are.
            quietUntil = now + policy.quietPeriod
            amount = 0
            pressureDeflatedBytes += bytes
            lastDeflate = (bytes, signal, now)
            pressureCeiling = min(pressureCeiling ?? actual, actual)
            events.append(.deflated(bytes: bytes, reason: signal, actual: actual))
            moved = true
            return bytes
        }
        // Stalls right after our own growth are our doing: pause growth only.
        // A floor breach and an OOM kill are answered whatever caused them.
        var selfInflicted = false
        switch signal {
        case .psi(.light), .psi(.heavy), .psi(.severe), .directReclaim:
            if let grew = lastGrowthAt, now - grew < policy.selfInflictedWindow { selfInflicted = true }
        default: break
        }
        if selfInflicted {
            amount = 0
            quietUntil = max(quietUntil ?? 0, now + policy.selfInflictedPause)
        } else {
            quietUntil = now + policy.quietPeriod
        }
        amount = min(amount, actual)
        if amount > 0 { reserver.shrink(by: amount) }
        let after = self.actual
        pressureCeiling = min(pressureCeiling ?? after, after)
        if amount > 0 {
            pressureDeflatedBytes += amount
            lastDeflate = (amount, signal, now)
            events.append(.deflated(bytes: amount, reason: signal, actual: after))
            moved = true
        }
        return amount
    }

    /// While the balloon holds memory, how often to check MemAvailable and
    /// /proc/vmstat: every 100 ms near the floor, up to 1 s with headroom;
    /// nil (no wake-ups at all) while the balloon is empty.
    public func floorCheckInterval(available: UInt64?) -> UInt64? {
        guard actual > 0 else { return nil }
        guard let available else { return 1000 }
        let floor = limits.availableFloor
        let headroom = available > floor ? available - floor : 0
        switch headroom {
        case ..<(128 << 20): return 100
        case ..<(256 << 20): return 250
        case ..<(512 << 20): return 500
        default: return 1000
        }
    }

    private func roundUpToPage(_ bytes: UInt64) -> UInt64 {
        (bytes + limits.pageSize - 1) / limits.pageSize * limits.pageSize
    }

    private enum InflateResult { case moved, blocked(UnreachableReason) }

    private func inflateOnce(toward goal: UInt64, from actual: UInt64) -> InflateResult {
        var size = min(limits.chunkSize, goal - actual)
        // MemAvailable drops by what we lock. Growth stops a little above the
        // floor, pressure deflation starts below it: the gap keeps ordinary
        // jitter (and the holders' own pages) from making the balloon deflate
        // because of its own growth.
        if let available = probe.availableBytes() {
            let stopLine = limits.availableFloor + min(policy.growthHeadroom, policy.floorMargin)
            let room = available > stopLine ? available - stopLine : 0
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
        lastGrowthAt = clock.milliseconds
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

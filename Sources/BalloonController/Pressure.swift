// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// What tells the daemon the guest needs memory back.
public enum PressureSignal: Sendable, Equatable {
    /// The PSI trigger tiers, as `info` names them.
    public typealias Tier = InfoReply.Trigger.Tier
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

    /// Whether the guest stalled (or the OOM killer acted), as opposed to
    /// its allocations reaching the floor.
    public var isStall: Bool {
        if case .belowFloor = self { return false }
        return true
    }

    /// The reason named in DEFLATED events and logs.
    public var reason: DeflateReason {
        switch self {
        case .psi(.light): .psiLight
        case .psi(.heavy): .psiHeavy
        case .psi(.severe): .psiSevere
        case .belowFloor: .memAvailableFloor
        case .directReclaim: .directReclaim
        case .oomKill: .oomKill
        case .holderKilled: .holderKilled
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
    /// The longest quiet period: no growth until the guest has been free
    /// of pressure this long (`QuietPeriod=`). 30 s, not a minute: a guest
    /// busy every 20–40 s otherwise never grew back between its workloads,
    /// and held its page cache against the host's target (docs/pressure.md).
    public var quietPeriod: Duration = .seconds(30)
    /// The quiet period after a stall that follows a calm spell
    /// (`FirstQuietPeriod=`); it doubles, up to `quietPeriod`, for each stall
    /// that comes within twice the last one's length after it ended: the
    /// memory taken back was needed after all. 15 s lets PSI's avg10, which
    /// the host's policy reads, settle before the balloon grows again.
    public var firstQuietPeriod: Duration = .seconds(15)
    /// After a stall undid regrowth, how long the guest must go without a
    /// stall before regrowth tries again in the same quiet period
    /// (`RegrowAgainAfter=`; doubled after an undo soon after it resumed,
    /// Regrowth.swift). 5 s: once regrowth could take a thrash's cache from
    /// the active list, it cut `make bench-host`'s time over the budget and
    /// the guests' stalls against 30 s, the longest quiet period, which kept
    /// regrowth away until the backoff lifted (docs/policy-bench.md, session 41).
    public var regrowAgainAfter: Duration = .seconds(5)
    /// Signals this soon after the balloon grew are blamed on the growth:
    /// nothing is deflated, and growth pauses for `selfInflictedPause`. A PSI
    /// signal looks back less far when its trigger's window is short
    /// (`triggers`).
    public var selfInflictedWindow: Duration = .seconds(2)
    /// The PSI triggers the daemon has open, by tier, as the kernel took them
    /// (a 2 s fallback shows here with its 2 s window). A PSI signal is blamed
    /// on growth within its trigger's window, and the stall is measured again
    /// `stallRecheckDelay` later (StallRecheck.swift): a stall that goes on at
    /// a trigger's rate with the balloon no longer growing is the guest's own
    /// and is answered then, not at the trigger's next firing (at most once a
    /// window). The kernel still counts part of the previous window's stall,
    /// so a stall of the growth's own can be answered with one light step
    /// (10%) that a longer look-back would have spared; late memory for a
    /// guest that stalls costs more.
    public var triggers: [PressureSignal.Tier: TriggerShape] = [
        .light: TriggerShape(full: false, stall: .milliseconds(20), window: .milliseconds(500)),
        .heavy: TriggerShape(full: true, stall: .milliseconds(100), window: .seconds(1)),
        .severe: TriggerShape(full: true, stall: .milliseconds(500), window: .seconds(1)),
    ]
    /// How long after a blamed PSI signal the stall is measured again. The
    /// lock that grew the balloon is over by then (the daemon handles the
    /// signal only after it), so the measure holds no stall of the growth's
    /// own faulting; 150 ms of it at a light trigger's 4% is 6 ms stalled.
    public var stallRecheckDelay: Duration = .milliseconds(150)
    /// The breather after a stall the balloon's own growth caused (faulting
    /// and zeroing pages, compaction). Pressure that is real outlasts it: the
    /// next signal then comes with no growth in the window and is answered
    /// in full, with the whole quiet period.
    public var selfInflictedPause: Duration = .seconds(5)
    /// How long a floor deflate keeps the free-memory mode from growing (the
    /// host's target still waits `quietPeriod`): none past the mode's own
    /// settle delay, which starts over at the deflate. The floor trips when
    /// the guest's own allocations use its memory, not when it stalls; the
    /// mode then grows only into memory that stayed free above the cushion
    /// for the settle delay, so it takes nothing the guest uses or reclaims.
    public var freeMemoryFloorHoldOff: Duration = .zero

    public init() {}

    /// How long after growth a signal is blamed on it.
    func selfInflictedWindow(for signal: PressureSignal) -> Duration {
        guard case let .psi(tier) = signal, let window = triggers[tier]?.window else { return selfInflictedWindow }
        return min(selfInflictedWindow, window)
    }
}

extension BalloonController {
    /// Answers a pressure signal at once: stops growth, starts (or extends)
    /// the quiet period, and gives memory back unless the signal is blamed on
    /// the balloon's own growth. Returns the bytes given back.
    @discardableResult
    public func pressure(_ signal: PressureSignal) -> UInt64 {
        pressure(signal, outlastedGrowth: false)
    }

    /// `outlastedGrowth`: the stall was measured again after growth stopped
    /// and went on (StallRecheck.swift): not blamed on the growth.
    func pressure(_ signal: PressureSignal, outlastedGrowth: Bool) -> UInt64 {
        let now = clock.now
        // An expired backoff's ceiling is not this signal's: regrowth may have
        // taken the balloon past it.
        liftExpiredBackoff(now)
        let actual = self.actual
        let ceilingBefore = pressureCeiling
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
            // Already gone; account for it and hold where we are, less
            // what regrowth took past the ceiling (undone, as below).
            quietUntil = now + stallHold(now)
            freeMemoryQuietUntil = quietUntil
            let undone = regrowthPast(ceilingBefore, actual: actual)
            if undone > 0 { reserver.shrink(by: undone) }
            let after = self.actual
            pressureCeiling = min(pressureCeiling ?? after, after)
            freeMemory?.cap(at: after)
            restartRegrowth(actualBefore: actual + bytes, ceilingBefore: ceilingBefore, after: after, stall: signal.isStall)
            noteDeflate(bytes + undone, signal, now: now, actual: after)
            return bytes + undone
        }
        // Stalls right after our own growth are our doing: pause growth only
        // (what regrowth took inside a quiet period still goes back, below).
        // A floor breach and an OOM kill are answered whatever caused them.
        var selfInflicted = false
        switch signal {
        case .psi(.light), .psi(.heavy), .psi(.severe), .directReclaim:
            if !outlastedGrowth, let grew = lastGrowthAt, now - grew < policy.selfInflictedWindow(for: signal) { selfInflicted = true }
        default: break
        }
        // A blamed PSI signal is measured again once growth has stopped; a
        // stall answered needs no second look.
        if case let .psi(tier) = signal, selfInflicted {
            blamedStall = BlamedStall(tier: tier, at: now)
        } else if !selfInflicted, signal.isStall {
            blamedStall = nil
        }
        if selfInflicted {
            amount = 0
            quietUntil = max(quietUntil ?? .zero, now + policy.selfInflictedPause)
        } else {
            quietUntil = now + stallHold(now)
        }
        // The free-memory mode waits the whole backoff after a stall (PSI,
        // direct reclaim, an OOM kill), but only a short hold-off after a
        // floor breach, and only the pause after a stall of its own growth.
        let modeHold: Duration
        if case .belowFloor = signal {
            modeHold = now + policy.freeMemoryFloorHoldOff
        } else {
            modeHold = selfInflicted ? now + policy.selfInflictedPause : quietUntil ?? now
        }
        freeMemoryQuietUntil = min(max(freeMemoryQuietUntil ?? .zero, modeHold), quietUntil ?? modeHold)
        // A stall after regrowth took memory past the ceiling undoes the
        // regrowth (Regrowth.swift): what it took goes back now, in this
        // signal's deflate, so the log and the host's DEFLATED count it (it
        // used to wait for the next step, unlogged), blamed or not.
        if signal.isStall { amount = max(amount, regrowthPast(ceilingBefore, actual: actual)) }
        amount = min(amount, actual)
        if amount > 0 { reserver.shrink(by: amount) }
        let after = self.actual
        pressureCeiling = min(pressureCeiling ?? after, after)
        freeMemory?.cap(at: after)
        restartRegrowth(actualBefore: actual, ceilingBefore: ceilingBefore, after: after, stall: signal.isStall)
        if amount > 0 { noteDeflate(amount, signal, now: now, actual: after) }
        return amount
    }

    /// The quiet period a signal starts now. Signals of one episode (before
    /// its hold ends) restart the same length; an episode soon after the last
    /// hold ended doubles it (up to `quietPeriod`); any other starts at
    /// `firstQuietPeriod`. A pause after the balloon's own growth is none.
    func stallHold(_ now: Duration) -> Duration {
        let longest = policy.quietPeriod
        let first = min(policy.firstQuietPeriod, longest)
        if let until = stallHoldUntil, until > now, let length = stallHoldLength {
            stallHoldUntil = now + length
            return length
        }
        let length = doublingBackoff(first: first, longest: longest, last: stallHoldLength,
                                     cameBackAfter: stallHoldUntil.map { now - $0 })
        stallHoldLength = length
        stallHoldUntil = now + length
        return length
    }

    /// A wait that backs off when trouble comes back soon: twice `last` (at
    /// least `first`, at most `longest`) when it came back less than twice
    /// `last` after the last one ended, otherwise `first`. The quiet period
    /// (`stallHold`) and regrowth's wait after an undo (Regrowth.swift) both.
    func doublingBackoff(first: Duration, longest: Duration, last: Duration?, cameBackAfter gap: Duration?) -> Duration {
        let first = min(first, longest)
        guard let last, let gap, gap < last * 2 else { return first }
        return min(max(last * 2, first), longest)
    }

    /// Whether the free-memory mode is held at the pressure ceiling now.
    var freeMemoryHeldBack: Bool {
        guard let until = freeMemoryQuietUntil, pressureCeiling != nil else { return false }
        return until > clock.now
    }

    /// Whether a pressure backoff is in force now.
    public var inPressureBackoff: Bool { quietUntil.map { $0 > clock.now } ?? false }

    /// While the balloon holds memory, how often to check MemAvailable and
    /// /proc/vmstat: every 100 ms near the floor, up to 1 s with headroom;
    /// nil (no wake-ups at all) while the balloon is empty.
    public func floorCheckInterval(available: UInt64?) -> Duration? {
        guard actual > 0 else { return nil }
        guard let available else { return .seconds(1) }
        let floor = limits.availableFloor
        let headroom = available > floor ? available - floor : 0
        switch headroom {
        case ..<(128 << 20): return .milliseconds(100)
        case ..<(256 << 20): return .milliseconds(250)
        case ..<(512 << 20): return .milliseconds(500)
        default: return .seconds(1)
        }
    }

    func roundUpToPage(_ bytes: UInt64) -> UInt64 {
        (bytes + limits.pageSize - 1) / limits.pageSize * limits.pageSize
    }
}

// SPDX-License-Identifier: Apache-2.0
import Glibc  // exp2: math only, no I/O

/// `auto`'s knobs. The defaults are in docs/policy.md with the reasons.
public struct AutoTuning: Sendable, Equatable {
    /// A guest's headroom: what it keeps available above its working set,
    /// `max(headroomMinimum, headroomFraction × RAM)`, times its boost.
    public var headroomFraction: Double = 0.10
    public var headroomMinimum: UInt64 = 96 << 20
    /// Never less than the guest's own MemAvailable floor plus this: its
    /// balloond stops inflating 16 MiB above the floor and gives memory back
    /// below it, so a target past that is refused, and while the policy
    /// counts it as taken, the host's shortfall is not asked of guests that
    /// have the room (docs/policy.md, "The guest's floor").
    public var guestFloorMargin: UInt64 = 32 << 20
    /// Hysteresis: spare memory is taken only above headroom + band, and a
    /// guest is given memory only below headroom; in between, nothing moves.
    /// `max(bandMinimum, bandFraction × RAM)`.
    public var bandFraction: Double = 0.03
    public var bandMinimum: UInt64 = 32 << 20
    /// While the host is above its reserve, each round takes this share of a
    /// guest's spare memory (× 1000/Shares, at most all of it).
    public var trimRate: Double = 0.5
    /// The most one guest's target rises in a round (inflation); giving back
    /// has no cap. `[Policy] MaxStep=` overrides it.
    public var maxStep: UInt64 = 128 << 20
    /// Host memory above the reserve before the policy gives unasked memory
    /// back (the host side's dead band).
    public var hostBand: UInt64 = 64 << 20
    /// Pressure signals: PSI memory `some` avg10 at or above this (percent)
    /// and rising by `psiRise` since the previous sample; `full` at or above
    /// `psiFullThreshold`; or a fault rate (per second) at or above its limit.
    public var psiSomeThreshold: Double = 1.0
    public var psiRise: Double = 0.25
    public var psiFullThreshold: Double = 0.5
    /// Or PSI `some` stall time within the last stats interval (from the
    /// `total` counter) at or above this share of it, in percent: a stall
    /// seen within one interval, not when the 10 s average has caught up.
    public var psiSomeIntervalShare: Double = 1.0
    /// Page-cache refaults (`[Policy] RefaultRate=`; 0: not a signal).
    public var refaultsPerSecond: Double = 2_500
    public var majorFaultsPerSecond: Double = 500
    public var swapInsPerSecond: Double = 256
    /// A guest whose available memory falls below this share of its
    /// headroom is treated as pressured even before PSI shows it.
    public var lowWater: Double = 0.5
    /// After pressure, only free memory is taken from the guest for
    /// `firstHoldOff`; pressure again within twice that after the hold
    /// ended doubles it, up to `holdOff`. The guest's balloond runs the same
    /// rule on its own quiet period (FirstQuietPeriod=, QuietPeriod=, 30 s
    /// by default): a hold-off at least as long asks for no more than the
    /// guest would give. Only pressure the host sees starts it, and it
    /// limits what is taken to free memory (page cache only when nothing
    /// else covers the host's shortfall, `View.lastRoom`).
    public var firstHoldOff: Duration = .seconds(15)
    public var holdOff: Duration = .seconds(60)
    /// Each pressure event multiplies the guest's headroom by `boostStep`
    /// (at most `boostLimit`, at most once per `boostSpacing`); the boost's
    /// excess over 1 halves every `boostHalfLife` without pressure.
    public var boostStep: Double = 1.5
    public var boostLimit: Double = 2
    public var boostSpacing: Duration = .seconds(10)
    public var boostHalfLife: Duration = .seconds(300)
    /// A sample older than this is not acted on (no taking on old news).
    public var staleAfter: Duration = .seconds(5)
    /// `[Policy] BurstYield=`: while a guest's balloon falls by `burstFall`
    /// of its RAM or more between rounds below its target (an instant burst),
    /// rounds take from no guest and stop inflations under way (AutoBurst.swift).
    /// On by default since `make bench-host` on f34e264 (docs/policy.md).
    public var burstYield = true
    public var burstFall: Double = 1.0 / 16
    /// `[Policy] BurstLinger=`: how long a guest found bursting still counts
    /// as bursting after the last round its balloon fell (AutoBurst.swift);
    /// zero: only in rounds it fell by `burstFall`.
    public var burstLinger: Duration = .zero
    /// `[Policy] BurstHoldGrowth=`: a guest whose own balloond held its
    /// balloon short of its target (so a burst's hold left it alone) is held
    /// the moment its balloon grows while another guest bursts, not at the
    /// next round (AutoBurst.swift, `grew`).
    public var burstHoldGrowth = false
    /// `[Policy] SpareStalledCache=`: a guest that stalls within
    /// `cacheStallWindow` of a round taking its page cache (`View.lastRoom`)
    /// keeps its cache for the rest of that hold-off: the stall showed the
    /// cache was its working set, and taking it again once `pressured` ends
    /// (two rounds) repeats the stall and the give-back (docs/policy.md).
    public var spareStalledCache = false
    public var cacheStallWindow: Duration = .seconds(5)

    public init() {}
}

/// What `auto` remembers about one guest between calls.
struct AutoGuest: Sendable {
    var previous: GuestSample?
    /// When the policy last moved the target.
    var lastChange: Duration?
    var lastPressure: Duration?
    var lastBoost: Duration?
    var boost: Double = 1
    var boostAt: Duration = .zero
    /// The current (or last) hold-off: its length and when it ends.
    var holdLength: Duration?
    var holdUntil: Duration?
    /// The balloon's size at the previous round (`BurstYield=`), and
    /// whether it grew since the round before.
    var roundActual: UInt64?
    var grewSinceRound = false
    /// When a round last took page cache from the guest (`View.lastRoom`),
    /// and until when its cache is spared after it stalled on that
    /// (`SpareStalledCache=`).
    var cacheTaken: Duration?
    var cacheSparedUntil: Duration?
    /// Until when the guest counts as bursting (`BurstLinger=`).
    var burstUntil: Duration?

    /// Decays the boost toward 1 (half-life), as of `now`.
    mutating func decay(now: Duration, _ tuning: AutoTuning) {
        guard boost > 1, now > boostAt else { return }
        let halves = (now - boostAt).seconds / tuning.boostHalfLife.seconds
        boost = 1 + (boost - 1) * exp2(-halves)
        boostAt = now
    }

    mutating func pressured(now: Duration, _ tuning: AutoTuning) {
        decay(now: now, tuning)
        lastPressure = now
        if lastBoost.map({ now >= $0 + tuning.boostSpacing }) ?? true {
            boost = Swift.min(boost * tuning.boostStep, tuning.boostLimit)
            lastBoost = now
            boostAt = now
        }
        hold(now: now, tuning)
        if tuning.spareStalledCache, let taken = cacheTaken, now <= taken + tuning.cacheStallWindow {
            cacheSparedUntil = holdUntil
        }
    }

    func cacheSpared(now: Duration) -> Bool {
        cacheSparedUntil.map { now < $0 } ?? false
    }

    /// Starts (or restarts) the hold-off. Signals of one episode restart the
    /// same length; an episode within twice the last hold after it ended
    /// doubles it (up to `holdOff`); any other starts at `firstHoldOff`.
    private mutating func hold(now: Duration, _ tuning: AutoTuning) {
        let longest = tuning.holdOff
        let first = Swift.min(tuning.firstHoldOff, longest)
        var length = first
        if let until = holdUntil, let last = holdLength {
            if until > now {
                length = last
            } else if now - until < last * 2 {
                length = Swift.min(Swift.max(last * 2, first), longest)
            }
        }
        holdLength = length
        holdUntil = now + length
    }

    func holdingOff(now: Duration) -> Bool {
        holdUntil.map { now < $0 } ?? false
    }
}

/// Why a sample shows pressure, or nil when it does not.
func pressureSignal(_ sample: GuestSample, previous: GuestSample?, available: Int64, headroom: Int64, _ t: AutoTuning) -> String? {
    if let some = sample.psiSomeAvg10, some >= t.psiSomeThreshold, some >= (previous?.psiSomeAvg10 ?? 0) + t.psiRise {
        return "psi some \(tenths(some))%"
    }
    if let full = sample.psiFullAvg10, full >= t.psiFullThreshold, full > (previous?.psiFullAvg10 ?? 0) {
        return "psi full \(tenths(full))%"
    }
    if let previous {
        let elapsed = sample.at - previous.at
        // Not an interval in which the balloon grew: its own faulting and
        // zeroing stall the guest a moment, which the guest's balloond blames
        // on the growth (docs/pressure.md); a stall that outlasts it shows
        // in the next interval.
        let grew = (sample.balloonActual ?? 0) > (previous.balloonActual ?? .max)
        // The counter is in µs: µs per second / 10,000 is percent.
        if !grew, let share = rate(sample.psiSomeTotal, previous.psiSomeTotal, over: elapsed).map({ $0 / 10_000 }),
           share >= t.psiSomeIntervalShare {
            return "psi some \(tenths(share))% over the last \(tenths(elapsed.seconds)) s"
        }
        if t.refaultsPerSecond > 0, let r = rate(sample.fileRefaults, previous.fileRefaults, over: elapsed), r >= t.refaultsPerSecond {
            return "refaults \(Int(r))/s"
        }
        if let r = rate(sample.majorFaults, previous.majorFaults, over: elapsed), r >= t.majorFaultsPerSecond {
            return "major faults \(Int(r))/s"
        }
        if let r = rate(sample.swapIn, previous.swapIn, over: elapsed), r >= t.swapInsPerSecond {
            return "swap-ins \(Int(r))/s"
        }
    }
    if Double(available) < Double(headroom) * t.lowWater {
        return "available \(mib(available)) below \(mib(Int64(Double(headroom) * t.lowWater)))"
    }
    return nil
}

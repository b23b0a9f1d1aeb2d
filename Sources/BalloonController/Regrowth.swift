// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// Regrowth into free memory during a pressure backoff (docs/pressure.md,
/// "Regrowth during the quiet period"; `[Pressure] RegrowFreeMemory=`).
///
/// The quiet period keeps the host's target from taking memory the guest may
/// need again. Memory a workload freed when it ended is not that memory: once
/// it has stayed free above the cushion for the settle delay, the balloon may
/// grow back into it toward the host's target, by the free-memory mode's
/// sizing rule (`FreeMemorySizer`), and gives it back the moment MemFree falls
/// below the cushion. Such growth never makes the kernel reclaim: it stops at
/// the cushion. Page cache becomes such memory only through the daemon's
/// cold-cache reclaim (`[Pressure] RegrowColdCache=`, `regrowthColdCacheRoom`),
/// a step at a time while the guest shows no stall and no refaults; growth
/// into MemAvailable itself still waits out the whole quiet period.
///
/// Once regrowth has taken memory past the ceiling and a stall follows (PSI,
/// direct reclaim, an OOM kill), it was wrong: what it took goes back (the
/// ceiling is where the signals left it), even for a stall blamed on
/// regrowth's own growth: the guess was made inside a quiet period the guest
/// earned. Regrowth then waits until the guest has gone `regrowAgainAfter`
/// without a stall: a workload that keeps stalling keeps it waiting, one that
/// ended does not leave its cache in the guest for the rest of the quiet
/// period, which its own stalls kept restarting. An undo soon after regrowth
/// resumed (within twice the wait) doubles the next wait, up to the longest
/// quiet period, as the quiet period itself backs off; a later one starts
/// from `regrowAgainAfter` again, so workloads a half-minute apart inside
/// one long backoff each get their regrowth back. A floor breach is not such a sign: the guest's own
/// allocations used memory that was free, which is what the balloon gives
/// back for (the free-memory mode's `freeMemoryFloorHoldOff` reasons the
/// same). It gives back what the floor asks and regrowth goes on from there,
/// after a new settle delay.
extension BalloonController {
    /// The ceiling on the host's part of the balloon now: the pressure
    /// ceiling, raised by what regrowth may take. nil outside a backoff.
    public var hostCeiling: UInt64? {
        guard let ceiling = pressureCeiling else { return nil }
        return max(ceiling, regrowth?.target ?? 0)
    }

    /// Whether the daemon should sample MemFree for regrowth: during a backoff
    /// that allows it, whether or not it has grown yet (it must also give back).
    public var wantsRegrowthSamples: Bool {
        guard regrowth != nil || (regrowthResumesAt != nil && regrowthPolicy != nil) else { return false }
        return quietUntil.map { $0 > clock.now } ?? false
    }

    /// How much page cache to turn into free memory for regrowth now
    /// (`[Pressure] RegrowColdCache=`): what it may still take toward the
    /// host's target, no further than growth may take MemAvailable (the
    /// floor's stop line: reclaim does not lower MemAvailable, growth does),
    /// less the memory already free above the cushion and its margin, which
    /// regrowth takes after its settle delay anyway. 0 outside a backoff that
    /// may regrow, and while regrowth waits after an undo.
    public func regrowthColdCacheRoom(memFree: UInt64) -> UInt64 {
        guard wantsRegrowthSamples, let sizer = regrowth else { return 0 }
        let limit = min(target, limits.maxBalloon)
        let have = max(actual, sizer.target)
        guard limit > have else { return 0 }
        // Regrowth grows in whole granules of settled free memory, so the
        // last part of a target that is not a multiple of one needs a whole
        // granule free (or it stays short of the target).
        let granule = sizer.policy.granule
        var room = (limit - have + granule - 1) / granule * granule
        if let available = probe.availableBytes() {
            room = min(room, available > growthStopLine ? available - growthStopLine : 0)
        }
        let settled = sizer.policy.cushion + sizer.policy.growthMargin
        let free = memFree > settled ? memFree - settled : 0
        return room > free ? room - free : 0
    }

    /// Feeds a MemFree sample to the regrowth; true when the balloon must move.
    @discardableResult
    public func sampleRegrowth(memFree: UInt64) -> Bool {
        liftExpiredBackoff(clock.now)
        resumeRegrowth(clock.now)
        guard var sizer = regrowth else { return false }
        // Never past the host's target: the mode's part is the mode's business.
        let limit = min(target, limits.maxBalloon)
        let changed = sizer.sample(memFree: memFree, actual: actual, limit: limit, now: clock.now)
        regrowth = sizer
        if changed { wake() }
        return changed
    }

    /// What regrowth holds above the pressure ceiling a signal found
    /// (`ceiling`): what a stall gives back at once. 0 without regrowth.
    func regrowthPast(_ ceiling: UInt64?, actual: UInt64) -> UInt64 {
        guard regrowth != nil, let ceiling, actual > ceiling else { return 0 }
        return actual - ceiling
    }

    /// A pressure signal during or at the start of a backoff. `actualBefore`:
    /// the balloon when the signal came; `ceilingBefore`: the pressure ceiling
    /// then; `after`: the balloon once this signal's deflate is done; `stall`:
    /// whether the signal says the guest stalled (not a floor breach).
    func restartRegrowth(actualBefore: UInt64, ceilingBefore: UInt64?, after: UInt64, stall: Bool) {
        let now = clock.now
        if stall, regrowthPast(ceilingBefore, actual: actualBefore) > 0 {
            regrowth = nil
            let wait = regrowthWait(now)
            regrowthWaitLength = wait
            regrowthResumesAt = now + wait
            return
        }
        if let resumes = regrowthResumesAt, let wait = regrowthWaitLength {
            // Waiting after an undo: each stall starts the wait again.
            if stall { regrowthResumesAt = max(resumes, now + wait) }
            regrowth = nil
            return
        }
        guard let policy = regrowthPolicy else {
            regrowth = nil
            return
        }
        var sizer = regrowth ?? FreeMemorySizer(policy: policy)
        sizer.cap(at: after)
        regrowth = sizer
    }

    /// The wait after an undo now: twice the last one (up to the longest
    /// quiet period) when regrowth had resumed less than twice that ago,
    /// otherwise `regrowAgainAfter`. A wait of the longest quiet period
    /// outlasts the backoff the undo's stall restarted: not again.
    func regrowthWait(_ now: Duration) -> Duration {
        doublingBackoff(first: policy.regrowAgainAfter, longest: policy.quietPeriod, last: regrowthWaitLength,
                        cameBackAfter: regrowthResumedAt.map { now - $0 })
    }

    /// The guest went the wait without a stall, still inside the backoff:
    /// regrowth starts again from where the balloon is, after its settle delay.
    func resumeRegrowth(_ now: Duration) {
        guard regrowth == nil, let at = regrowthResumesAt, now >= at, inPressureBackoff,
              let policy = regrowthPolicy else { return }
        regrowthResumesAt = nil
        regrowthResumedAt = now
        var sizer = FreeMemorySizer(policy: policy)
        sizer.cap(at: actual)
        regrowth = sizer
    }
}

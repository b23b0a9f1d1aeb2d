// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// How the free-memory mode sizes its part of the balloon
/// (`[FreeMemory]`, docs/free-memory.md).
public struct FreeMemoryPolicy: Sendable, Equatable {
    /// MemFree the mode leaves to the guest: it grows only into free memory
    /// above this, and shrinks the moment MemFree is below it.
    public var cushion: UInt64
    /// Free memory must have stayed free this long before the balloon takes
    /// it, as the kernel's free page reporting waits ~2 s, so memory freed
    /// and reused at once is not churned through the host.
    public var settleDelay: Duration = .seconds(2)
    /// Growth and shrinking in whole units of this (a pageblock, 2 MiB on
    /// x86-64: the order the kernel reports, and a huge page when THP gives one).
    public var granule: UInt64 = 2 << 20
    /// Free memory growth leaves above the cushion (hysteresis, see `sample`).
    public var growthMargin: UInt64 { max(16 << 20, cushion / 8) }

    public init(cushion: UInt64, settleDelay: Duration = .seconds(2), granule: UInt64 = 2 << 20) {
        self.cushion = cushion
        self.settleDelay = settleDelay
        self.granule = max(granule, 1)
    }
}

/// The sizing rule, pure: from MemFree samples to the balloon size the mode
/// asks for (`target`). The balloon is one: the controller follows the
/// larger of this and the host's target.
///
/// - Below the cushion it shrinks at once by the deficit plus one cushion
///   (whole granules): an allocation that ate the cushion is likely to go
///   on, and refilling MemFree to twice the cushion keeps the next sample's
///   allocations out of the kernel's watermarks. Memory that then stays
///   free is taken again after the settle delay.
/// - Above it, it grows to the largest balloon that would have left MemFree
///   above the cushion and its margin through the whole last `settleDelay`:
///   the window's smallest MemFree + balloon. Counting the balloon in keeps
///   the window running while the balloon moves (its own growth takes as much
///   MemFree as it adds), so memory a workload frees over a second is taken
///   in one settle delay, not in one delay per step. It grows only from where
///   the balloon is and never while a previous growth is under way: it takes
///   only memory that is already free, so it never makes the kernel reclaim.
public struct FreeMemorySizer: Sendable, Equatable {
    public var policy: FreeMemoryPolicy
    /// The balloon size the mode asks for.
    public private(set) var target: UInt64 = 0
    /// A continuous run of samples, oldest first, none older than the delay
    /// needs: MemFree + balloon at each.
    private var window: [Sample] = []
    /// When the run began: it must cover `settleDelay` before growth.
    private var windowStart: Duration?

    struct Sample: Sendable, Equatable {
        var at: Duration
        var freePlusBalloon: UInt64
    }

    public init(policy: FreeMemoryPolicy) { self.policy = policy }

    /// One MemFree sample. `actual`: the balloon now; `limit`: the most it may
    /// hold now (MaxBalloon=, a pressure ceiling). Returns whether `target` changed.
    public mutating func sample(memFree: UInt64, actual: UInt64, limit: UInt64, now: Duration) -> Bool {
        let before = target
        let granule = policy.granule
        if memFree < policy.cushion {
            let deficit = (2 * policy.cushion - memFree + granule - 1) / granule * granule
            let base = min(target, actual)
            target = base > deficit ? base - deficit : 0
            resetWindow()
            return target != before
        }
        if target > limit { target = limit }
        let start = windowStart ?? now
        windowStart = start
        window.append(Sample(at: now, freePlusBalloon: memFree + actual))
        window.removeAll { now - $0.at > policy.settleDelay }
        guard now - start >= policy.settleDelay, actual >= target, actual < limit,
              let settled = window.map(\.freePlusBalloon).min()
        else { return target != before }
        // Growth leaves `growthMargin` above the cushion: the chunks' own
        // overhead (holder processes, page tables) must not take MemFree
        // under the cushion right after the balloon grew, or it would shrink
        // by a cushion and grow again, over and over.
        let floor = policy.cushion + policy.growthMargin
        guard settled > floor + actual else { return target != before }
        let growth = (settled - floor - actual) / granule * granule
        guard growth > 0 else { return target != before }
        target = min(actual + growth, limit)
        return target != before
    }

    private mutating func resetWindow() {
        window.removeAll()
        windowStart = nil
    }

    /// After a pressure deflate: the mode asks for no more than what is left.
    public mutating func cap(at bytes: UInt64) {
        target = min(target, bytes)
        resetWindow()
    }
}

extension BalloonController {
    /// The balloon size the free-memory mode asks for; 0 when it is off.
    public var freeMemoryTarget: UInt64 { freeMemory?.target ?? 0 }

    /// Of `actual`, the guest's free memory the mode holds: what the balloon
    /// holds above the host's target. The guest gets it back as soon as it
    /// needs it, so the floor checks count it as available.
    public var freeMemoryHeld: UInt64 {
        guard freeMemory != nil else { return 0 }
        let host = min(target, limits.maxBalloon)
        return actual > host ? actual - host : 0
    }

    /// Switches the mode on (or retunes it); the balloon grows from the next samples.
    public func enableFreeMemory(_ policy: FreeMemoryPolicy) {
        if freeMemory == nil { freeMemory = FreeMemorySizer(policy: policy) } else { freeMemory?.policy = policy }
        wake()
    }

    /// Switches the mode off: the balloon goes back to the host's target.
    public func disableFreeMemory() {
        guard freeMemory != nil else { return }
        freeMemory = nil
        wake()
    }

    /// Feeds a MemFree sample to the mode; true when the balloon must move.
    @discardableResult
    public func sampleFreeMemory(memFree: UInt64) -> Bool {
        guard var sizer = freeMemory else { return false }
        liftExpiredBackoff(clock.now)
        // A floor deflate holds the mode back only for its settle delay
        // (Pressure.swift): it then grows above the ceiling that still caps
        // the host's target.
        let limit = min(limits.maxBalloon, freeMemoryHeldBack ? pressureCeiling ?? .max : .max)
        let changed = sizer.sample(memFree: memFree, actual: actual, limit: limit, now: clock.now)
        freeMemory = sizer
        if changed { wake() }
        return changed
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// The free-memory mode's sizing rule (docs/free-memory.md) on a fake clock.
@Suite final class FreeMemorySizerTests {
    let cushion = 100 * MiB
    var sizer = FreeMemorySizer(policy: FreeMemoryPolicy(cushion: 100 * MiB))
    var now: Duration = .seconds(50)

    /// Samples every 250 ms for `duration`, the balloon staying at `actual`.
    func hold(memFree: UInt64, actual: UInt64, for duration: Duration, limit: UInt64 = 8 * GiB) -> [Bool] {
        var changes: [Bool] = []
        let end = now + duration
        while now <= end {
            changes.append(sizer.sample(memFree: memFree, actual: actual, limit: limit, now: now))
            now += .milliseconds(250)
        }
        return changes
    }

    @Test func growsOnlyAfterTheSettleDelay() {
        // 1.75 s of steady free memory: not yet.
        let r1 = hold(memFree: 616 * MiB, actual: 0, for: .milliseconds(1750)).allSatisfy { !$0 }
        #expect(r1)
        #expect(sizer.target == 0)
        // At 2 s the excess above the cushion is taken, in whole 2 MiB granules.
        let r2 = sizer.sample(memFree: 616 * MiB, actual: 0, limit: 8 * GiB, now: now)
        #expect(r2)
        #expect(sizer.target == 500 * MiB)
    }

    @Test func takesTheSmallestExcessOfTheWindow() {
        _ = hold(memFree: 700 * MiB, actual: 0, for: .milliseconds(500))
        _ = hold(memFree: 317 * MiB, actual: 0, for: .milliseconds(500))  // a dip: only this much stayed free
        _ = hold(memFree: 900 * MiB, actual: 0, for: .seconds(1))
        #expect(sizer.target == 200 * MiB)
    }

    @Test func shortLivedFreeMemoryIsNotTaken() {
        // Free for 1.5 s, then used again: the window starts over each time.
        for _ in 0..<4 {
            _ = hold(memFree: 800 * MiB, actual: 0, for: .milliseconds(1500))
            _ = hold(memFree: 90 * MiB, actual: 0, for: .milliseconds(250))
        }
        #expect(sizer.target == 0)
    }

    @Test func shrinksAtOnceBelowTheCushion() {
        _ = hold(memFree: 616 * MiB, actual: 0, for: .seconds(2))
        #expect(sizer.target == 500 * MiB)
        // The balloon reached it; MemFree then falls 5 MiB short of the cushion:
        // one sample gives back the deficit plus a cushion, in whole granules.
        let r3 = sizer.sample(memFree: cushion - 5 * MiB, actual: 500 * MiB, limit: 8 * GiB, now: now)
        #expect(r3)
        #expect(sizer.target == 394 * MiB)
    }

    @Test func neverGrowsWhileTheBalloonIsMovingOrShortOfItsTarget() {
        _ = hold(memFree: 616 * MiB, actual: 0, for: .seconds(2))
        #expect(sizer.target == 500 * MiB)
        // Growth under way: MemFree is still high, but the balloon moves.
        var actual: UInt64 = 0
        for _ in 0..<20 {
            actual = min(actual + 64 * MiB, 400 * MiB)
            _ = sizer.sample(memFree: 716 * MiB - actual, actual: actual, limit: 8 * GiB, now: now)
            now += .milliseconds(250)
        }
        // Stopped at 400 MiB (held back by something else): no double counting.
        #expect(sizer.target == 500 * MiB)
    }

    /// A workload's exit frees its memory over a second or so. The balloon's
    /// own growth does not restart the window, so memory that has stayed free
    /// for the settle delay is taken as soon as it has, not one delay per
    /// step; and never more than stayed free for the whole delay.
    @Test func memoryFreedOverASecondIsTakenOneSettleDelayAfterItIsFree() {
        let start = now
        var actual: UInt64 = 0
        var history: [(at: Duration, free: UInt64)] = []
        // Free memory with no balloon: 200 MiB, +100 MiB every 250 ms up to 800 MiB at 1.5 s.
        func freeWithoutBalloon(_ t: Duration) -> UInt64 {
            let steps = UInt64(max(0, min(6, (t - start) / .milliseconds(250))))
            return (200 + 100 * steps) * MiB
        }
        var fullAt: Duration?
        while now <= start + .seconds(6) {
            let free = freeWithoutBalloon(now)
            history.append((now, free))
            _ = sizer.sample(memFree: free - actual, actual: actual, limit: 8 * GiB, now: now)
            // Never more than what stayed free (above cushion + margin) for the last 2 s.
            let stayed = history.filter { now - $0.at <= .seconds(2) }.map(\.free).min()!
            #expect(sizer.target + cushion + 16 * MiB <= stayed)
            if fullAt == nil, sizer.target == 684 * MiB { fullAt = now - start }
            actual = sizer.target  // the balloon reaches it before the next sample
            now += .milliseconds(250)
        }
        // Free since 1.5 s, so all of it by 3.5 s (restarting the window after
        // each growth took until 4.5 s here, and longer with slower growth).
        #expect(fullAt == .milliseconds(3500))
    }

    @Test func growsFromTheBalloonTheHostAlreadyHas() {
        // The host's target holds 1 GiB; 300 MiB more is free above the cushion and its margin.
        _ = hold(memFree: 416 * MiB, actual: 1 * GiB, for: .seconds(2))
        #expect(sizer.target == 1 * GiB + 300 * MiB)
    }

    @Test func staysWithinTheLimitAndThePressureCap() {
        _ = hold(memFree: 2 * GiB, actual: 0, for: .seconds(2), limit: 1 * GiB)
        #expect(sizer.target == 1 * GiB)
        sizer.cap(at: 256 * MiB)
        #expect(sizer.target == 256 * MiB)
    }

    /// Right after growth the chunks' overhead takes a little MemFree: that
    /// stays above the cushion, so the balloon does not shrink and regrow.
    @Test func growthLeavesAMarginSoItsOwnOverheadDoesNotBounceIt() {
        _ = hold(memFree: 616 * MiB, actual: 0, for: .seconds(2))
        #expect(sizer.target == 500 * MiB)
        let r = hold(memFree: cushion + 16 * MiB - 6 * MiB, actual: 500 * MiB, for: .seconds(10))
        #expect(r.allSatisfy { !$0 })
        #expect(sizer.target == 500 * MiB)
    }

    @Test func aSmallExcessIsNotWorthAChunk() {
        _ = hold(memFree: cushion + 1 * MiB, actual: 0, for: .seconds(3))
        #expect(sizer.target == 0)
    }
}

/// The mode through the controller: one balloon, the larger of the two targets.
@Suite struct FreeMemoryControllerTests {
    @Test func theBalloonFollowsTheLargerOfTheTwoTargets() throws {
        let rig = Rig(available: 6 * GiB)
        try rig.controller.setTarget(512 * MiB)
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
        rig.controller.enableFreeMemory(FreeMemoryPolicy(cushion: 128 * MiB))
        // 1 GiB free above the cushion for 2 s.
        for _ in 0...8 {
            rig.controller.sampleFreeMemory(memFree: 1168 * MiB)
            rig.clock.advance(.milliseconds(250))
        }
        #expect(rig.controller.freeMemoryTarget == 1536 * MiB)
        #expect(rig.controller.effectiveTarget == 1536 * MiB)
        rig.run()
        #expect(rig.controller.actual == 1536 * MiB)
        #expect(rig.controller.freeMemoryHeld == 1 * GiB)
        // The host raises its target above the mode's: the host's part grows, the held part shrinks.
        try rig.controller.setTarget(2 * GiB)
        rig.run()
        #expect(rig.controller.actual == 2 * GiB)
        #expect(rig.controller.freeMemoryHeld == 0)
        // Off: back to the host's target alone.
        try rig.controller.setTarget(256 * MiB)
        rig.controller.disableFreeMemory()
        rig.run()
        #expect(rig.controller.actual == 256 * MiB)
    }

    @Test func heldFreeMemoryCountsAsAvailableForTheFloor() throws {
        // MemAvailable 1 GiB, floor 256 MiB: the mode's growth does not stop
        // 16 MiB above the floor, since what it takes stays available.
        let rig = Rig(floor: 256 * MiB, available: 1 * GiB)
        rig.controller.enableFreeMemory(FreeMemoryPolicy(cushion: 64 * MiB))
        for _ in 0...8 {
            rig.controller.sampleFreeMemory(memFree: 1040 * MiB)
            rig.clock.advance(.milliseconds(250))
        }
        rig.run()
        #expect(rig.controller.actual == 960 * MiB)
        #expect(rig.controller.reason == nil)
    }

    @Test func aPressureDeflateCapsTheModeAndARetryDoesNotDelayAShrink() throws {
        let rig = Rig(available: 4 * GiB)
        rig.controller.enableFreeMemory(FreeMemoryPolicy(cushion: 64 * MiB))
        for _ in 0...8 {
            rig.controller.sampleFreeMemory(memFree: 1104 * MiB)
            rig.clock.advance(.milliseconds(250))
        }
        rig.run()
        #expect(rig.controller.actual == 1 * GiB)
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.heavy))
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.freeMemoryTarget == 512 * MiB)
        // Below the cushion: the mode shrinks at once, even in the backoff.
        #expect(rig.controller.sampleFreeMemory(memFree: 32 * MiB))
        rig.run()
        #expect(rig.controller.actual == 416 * MiB)
    }
}

extension FreeMemoryControllerTests {
    /// With no host target, nothing but the mode's samples steps the
    /// controller: they must end the pressure backoff, or it never grows again.
    @Test func theModeGrowsAgainAfterTheQuietPeriodWithNoHostTarget() throws {
        let rig = Rig(available: 4 * GiB)
        rig.controller.enableFreeMemory(FreeMemoryPolicy(cushion: 64 * MiB))
        for _ in 0...8 {
            rig.controller.sampleFreeMemory(memFree: 592 * MiB)
            rig.clock.advance(.milliseconds(250))
        }
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.severe))
        #expect(rig.controller.actual == 0)
        #expect(rig.run().outcome == .idle)
        // The quiet period passes; free memory is there again.
        rig.clock.advance(rig.controller.policy.quietPeriod)
        for _ in 0...8 {
            rig.controller.sampleFreeMemory(memFree: 592 * MiB)
            rig.clock.advance(.milliseconds(250))
        }
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
    }
}

/// Cold page cache reclaim's feedback on a fake clock.
@Suite struct ColdCacheGovernorTests {
    func sample(stall: Int64 = 0, refaults: UInt64 = 0, inactive: UInt64 = 500 * MiB, active: UInt64 = 0) -> ColdCacheGovernor.Sample {
        .init(someStall: .microseconds(stall), refaults: refaults, inactiveFile: inactive, activeFile: active)
    }

    @Test func reclaimsStepsWhileCalmAndBacksOffOnRefaults() {
        var g = ColdCacheGovernor()
        var now: Duration = .seconds(10)
        let r4 = g.decide(sample(), now: now) == .nothingCold  // baselines only
        #expect(r4)
        now += .seconds(2)
        let r5 = g.decide(sample(stall: 100), now: now) == .reclaim(32 * MiB)  // 100 µs in 2 s: calm
        #expect(r5)
        now += .seconds(2)
        // A refault storm: 10 MiB of file pages read back in 2 s.
        let r6 = g.decide(sample(stall: 100, refaults: 2560), now: now) == .backOff(.seconds(4))
        #expect(r6)
        #expect(g.backingOff)
        now += .seconds(4)
        let r7 = g.decide(sample(stall: 100, refaults: 5120), now: now) == .backOff(.seconds(8))
        #expect(r7)
        now += .seconds(8)
        let r8 = g.decide(sample(stall: 100, refaults: 5130), now: now) == .reclaim(32 * MiB)
        #expect(r8)
        #expect(!g.backingOff)
    }

    @Test func psiStallStopsReclaimAndTheBackoffIsBounded() {
        var g = ColdCacheGovernor()
        var now: Duration = .seconds(10)
        var stall: Int64 = 0
        _ = g.decide(sample(), now: now)
        var waits: [Duration] = []
        for _ in 0..<8 {
            now += .seconds(2)
            stall += 20_000  // 20 ms a 2 s interval: 1%
            if case let .backOff(wait) = g.decide(sample(stall: stall), now: now) { waits.append(wait) }
        }
        #expect(waits == [.seconds(4), .seconds(8), .seconds(16), .seconds(32), .seconds(64), .seconds(120), .seconds(120), .seconds(120)])
    }

    @Test func leavesALittleInactiveCacheAlone() {
        var g = ColdCacheGovernor()
        _ = g.decide(sample(inactive: 40 * MiB), now: .seconds(1))
        let r9 = g.decide(sample(inactive: 40 * MiB), now: .seconds(3)) == .reclaim(8 * MiB)
        #expect(r9)
        let r10 = g.decide(sample(inactive: 20 * MiB), now: .seconds(5)) == .nothingCold
        #expect(r10)
    }

    /// After a thrash its cache sits on the active list (Inactive(file) 0 of
    /// 480 MiB in a TCG guest): the mode leaves it, regrowth's governor takes
    /// it, and a refault still stops it.
    @Test func activeCacheIsColdForRegrowthOnly() {
        let thrashed = sample(inactive: 0, active: 480 * MiB)
        var mode = ColdCacheGovernor()
        _ = mode.decide(thrashed, now: .seconds(1))
        let modeLeaves = mode.decide(thrashed, now: .seconds(3)) == .nothingCold
        #expect(modeLeaves)

        var policy = ColdCacheGovernor.Policy()
        policy.activeIsCold = true
        var regrowth = ColdCacheGovernor(policy: policy)
        _ = regrowth.decide(thrashed, now: .seconds(1))
        let takes = regrowth.decide(thrashed, now: .seconds(3)) == .reclaim(32 * MiB)
        #expect(takes)
        let keeps = regrowth.decide(sample(inactive: 0, active: 40 * MiB), now: .seconds(5)) == .reclaim(8 * MiB)
        #expect(keeps)
        let readBack = regrowth.decide(sample(refaults: 1024, inactive: 0, active: 40 * MiB), now: .seconds(7))
            == .backOff(.seconds(4))
        #expect(readBack)
    }
}

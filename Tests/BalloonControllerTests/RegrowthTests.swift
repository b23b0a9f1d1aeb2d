// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// A host target of 512 MiB reached, regrowth allowed (with `cushion`), then
/// a severe stall that gave everything back.
func regrowthStalledRig(cushion: UInt64, regrowth: Bool = true) throws -> Rig {
    let rig = Rig(available: 4 * GiB)
    if regrowth { rig.controller.regrowthPolicy = FreeMemoryPolicy(cushion: cushion) }
    try rig.controller.setTarget(512 * MiB)
    rig.run()
    rig.clock.advance(.seconds(10))
    rig.controller.pressure(.psi(.severe))
    #expect(rig.controller.actual == 0)
    return rig
}

/// MemFree samples every 250 ms for `duration`, stepping the controller.
/// `free`: MemFree with an empty balloon; each sample is that less the
/// balloon, as in a guest.
func feedRegrowth(_ rig: Rig, free: UInt64, for duration: Duration) {
    let end = rig.clock.now + duration
    while rig.clock.now <= end {
        let actual = rig.controller.actual
        if rig.controller.wantsRegrowthSamples {
            rig.controller.sampleRegrowth(memFree: free > actual ? free - actual : 0)
        }
        rig.run(perStep: .zero)
        rig.clock.advance(.milliseconds(250))
    }
}

/// Regrowth into free memory during a pressure backoff (Regrowth.swift,
/// docs/pressure.md): the host's part grows back into memory that stayed free
/// above the cushion, not into page cache, and after it was wrong only once
/// the guest went a while without a stall.
@Suite struct RegrowthTests {
    static let cushion = 64 * MiB

    func stalledRig(regrowth: Bool = true) throws -> Rig {
        try regrowthStalledRig(cushion: Self.cushion, regrowth: regrowth)
    }

    /// `stalledRig`, then 700 MiB free for long enough: regrown to the target.
    func regrownRig() throws -> Rig {
        let rig = try stalledRig()
        feedRegrowth(rig, free: 700 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == 512 * MiB)
        return rig
    }


    @Test func afterAStallTheHostsTargetRegrowsIntoSettledFreeMemory() throws {
        let rig = try stalledRig()
        #expect(rig.controller.wantsRegrowthSamples)
        let settle = FreeMemoryPolicy(cushion: Self.cushion).settleDelay
        // The workload that stalled has ended: 700 MiB free. Not taken
        // before it stayed free for the settle delay...
        feedRegrowth(rig, free: 700 * MiB, for: settle - .milliseconds(250))
        #expect(rig.controller.actual == 0)
        // ...then up to the host's target, long before the quiet period ends.
        feedRegrowth(rig, free: 700 * MiB, for: .seconds(2))
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.inPressureBackoff)
        #expect(rig.controller.hostCeiling == 512 * MiB)
        #expect(rig.controller.state == .idle)
    }

    @Test func withoutRegrowthTheQuietPeriodHoldsTheHostsTarget() throws {
        let rig = try stalledRig(regrowth: false)
        #expect(!rig.controller.wantsRegrowthSamples)
        feedRegrowth(rig, free: 700 * MiB, for: rig.controller.policy.firstQuietPeriod - .seconds(1))
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.state == .unreachable)
    }

    @Test func itTakesOnlyFreeMemoryAboveTheCushionNeverMore() throws {
        let rig = try stalledRig()
        // MemAvailable is large (page cache), MemFree is not: 64 + 100 MiB.
        feedRegrowth(rig, free: Self.cushion + 100 * MiB, for: .seconds(10))
        let margin = FreeMemoryPolicy(cushion: Self.cushion).growthMargin
        #expect(rig.controller.actual == (100 * MiB - margin) / (2 * MiB) * (2 * MiB))
        #expect(rig.controller.actual < 100 * MiB)
        // Never past the host's target, however much is free.
        feedRegrowth(rig, free: 4 * GiB, for: .seconds(10))
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func itGivesBackTheMomentMemFreeFallsBelowTheCushion() throws {
        let rig = try regrownRig()
        // A workload takes memory again: MemFree 32 MiB below the cushion.
        rig.controller.sampleRegrowth(memFree: Self.cushion - 32 * MiB)
        rig.run(perStep: .zero)
        // The deficit (32 MiB) plus a cushion goes back at once (FreeMemorySizer).
        #expect(rig.controller.actual == 512 * MiB - 32 * MiB - Self.cushion)
    }

    @Test func pressureAfterRegrowthUndoesItUntilTheGuestWentTheWaitWithoutAStall() throws {
        let rig = try regrownRig()
        rig.controller.policy.regrowAgainAfter = .seconds(5)
        rig.clock.advance(.seconds(5))
        // Regrowth was wrong: a light signal comes. What regrowth took goes
        // back to the ceiling the stall left (0) in the signal's own deflate,
        // which the log and the host's DEFLATED count; none is taken again,
        // however much is free, until the guest went RegrowAgainAfter=
        // without a stall.
        _ = rig.controller.takeEvents()
        #expect(rig.controller.pressure(.psi(.light)) == 512 * MiB)
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.takeEvents() == [deflated(512 * MiB, .psiLight, actual: 0)])
        rig.run(perStep: .zero)
        #expect(rig.controller.regrowth == nil)
        let wait = rig.controller.policy.regrowAgainAfter
        let settle = FreeMemoryPolicy(cushion: Self.cushion).settleDelay
        feedRegrowth(rig, free: 700 * MiB, for: wait - .milliseconds(250))
        #expect(rig.controller.actual == 0)
        // Then it regrows after its settle delay, still inside the quiet
        // period the signal restarted.
        feedRegrowth(rig, free: 700 * MiB, for: settle + .seconds(1))
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.inPressureBackoff)
        // An undo soon after regrowth resumed waits twice as long.
        rig.controller.pressure(.psi(.light))
        rig.run(perStep: .zero)
        #expect(rig.controller.actual == 0)
        feedRegrowth(rig, free: 700 * MiB, for: wait * 2 - .milliseconds(250))
        #expect(rig.controller.actual == 0)
        feedRegrowth(rig, free: 700 * MiB, for: settle + .seconds(1))
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.inPressureBackoff)
    }

    @Test func anUndoLongAfterRegrowthResumedWaitsTheFirstWaitAgain() throws {
        // One long backoff (workloads a half-minute apart keep restarting it).
        let rig = Rig(available: 4 * GiB)
        rig.controller.policy.firstQuietPeriod = .seconds(60)
        rig.controller.policy.quietPeriod = .seconds(60)
        rig.controller.policy.regrowAgainAfter = .seconds(5)
        rig.controller.regrowthPolicy = FreeMemoryPolicy(cushion: Self.cushion)
        try rig.controller.setTarget(512 * MiB)
        rig.run()
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.severe))
        feedRegrowth(rig, free: 700 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == 512 * MiB)
        let wait = rig.controller.policy.regrowAgainAfter
        let settle = FreeMemoryPolicy(cushion: Self.cushion).settleDelay
        rig.controller.pressure(.psi(.light))
        feedRegrowth(rig, free: 700 * MiB, for: wait + settle + .seconds(1))
        #expect(rig.controller.actual == 512 * MiB)
        // The next workload stalls more than twice the wait after regrowth
        // resumed: the wait is the first one again, not twice it.
        rig.clock.advance(wait * 2)
        rig.controller.pressure(.psi(.light))
        rig.run(perStep: .zero)
        #expect(rig.controller.actual == 0)
        feedRegrowth(rig, free: 700 * MiB, for: wait + settle + .seconds(1))
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.inPressureBackoff)
    }

    @Test func aStallDuringTheWaitStartsItAgain() throws {
        let rig = try regrownRig()
        rig.controller.policy.regrowAgainAfter = .seconds(5)
        rig.controller.pressure(.psi(.light))
        rig.run(perStep: .zero)
        let wait = rig.controller.policy.regrowAgainAfter
        // The workload is still running: it stalls again 3 s later, with
        // nothing left to give back.
        feedRegrowth(rig, free: 700 * MiB, for: .seconds(3) - .milliseconds(250))
        rig.controller.pressure(.psi(.light))
        // Without that stall regrowth would have taken the memory by now.
        feedRegrowth(rig, free: 700 * MiB, for: wait - .milliseconds(250))
        #expect(rig.controller.actual == 0)
        feedRegrowth(rig, free: 700 * MiB, for: .seconds(3))
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func aWaitOfTheQuietPeriodHoldsForTheRestOfIt() throws {
        let rig = try regrownRig()
        rig.controller.policy.regrowAgainAfter = rig.controller.policy.quietPeriod
        rig.clock.advance(.seconds(5))
        rig.controller.pressure(.psi(.light))
        rig.run(perStep: .zero)
        #expect(rig.controller.actual == 0)
        feedRegrowth(rig, free: 700 * MiB, for: rig.controller.policy.firstQuietPeriod - .seconds(1))
        #expect(rig.controller.actual == 0)
        // The signal restarted the quiet period; after it, the host's target.
        rig.clock.advance(rig.controller.policy.quietPeriod)
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.hostCeiling == nil)
        #expect(!rig.controller.wantsRegrowthSamples)
    }

    @Test func aFloorBreachAfterRegrowthGivesBackWhatTheFloorAsksAndRegrowthGoesOn() throws {
        let rig = try regrownRig()
        rig.clock.advance(.seconds(5))
        // A workload's allocations reach the floor: no stall. The floor's
        // margin goes back...
        let floor = rig.controller.limits.availableFloor
        let given = rig.controller.pressure(.belowFloor(available: floor))
        rig.run(perStep: .zero)
        #expect(given == rig.controller.policy.floorMargin)
        #expect(rig.controller.actual == 512 * MiB - given)
        // ...and once the workload has ended and its memory stayed free for
        // the settle delay, regrowth takes it again, inside the quiet period.
        #expect(rig.controller.wantsRegrowthSamples)
        feedRegrowth(rig, free: 700 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.inPressureBackoff)
        // A stall after that regrowth still spends it: back to the ceiling
        // the first stall left.
        rig.controller.pressure(.psi(.light))
        rig.run(perStep: .zero)
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.regrowth == nil)
    }

    @Test func aStallBlamedOnRegrowthsOwnGrowthStillUndoesIt() throws {
        let rig = try stalledRig()
        // Regrowth takes the host's target back...
        var steps = 0
        while rig.controller.actual < 512 * MiB, steps < 40 {
            feedRegrowth(rig, free: 700 * MiB, for: .zero)
            steps += 1
        }
        #expect(rig.controller.actual == 512 * MiB)
        // ...and a light signal comes within its trigger's window of that
        // growth. Outside a backoff such a signal only pauses growth; here
        // the regrowth was a guess made inside a quiet period the guest
        // earned by stalling, and a stall right after it says the guess was
        // wrong, whoever caused it: what it took goes back (docs/pressure.md).
        // It goes back in the signal's own deflate, not at the next step.
        _ = rig.controller.takeEvents()
        let given = rig.controller.pressure(.psi(.light))
        #expect(given == 512 * MiB)
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.takeEvents() == [deflated(512 * MiB, .psiLight, actual: 0)])
        rig.run(perStep: .zero)
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.regrowth == nil)
    }

    @Test func aLostHolderAfterRegrowthGivesBackTheRestOfWhatItTook() throws {
        let rig = try regrownRig()
        // The OOM killer took one holder (64 MiB) of the 512 MiB regrowth took
        // past the ceiling (0): the rest goes back with it, counted as one.
        rig.reserver.shrink(by: 64 * MiB)
        _ = rig.controller.takeEvents()
        #expect(rig.controller.pressure(.holderKilled(bytes: 64 * MiB)) == 512 * MiB)
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.takeEvents() == [deflated(512 * MiB, .holderKilled, actual: 0)])
        #expect(rig.controller.regrowth == nil)
    }

    @Test func signalsBeforeRegrowthTookAnythingDoNotSpendIt() throws {
        let rig = try stalledRig()
        rig.clock.advance(.seconds(1))
        rig.controller.pressure(.psi(.heavy))
        rig.controller.pressure(.belowFloor(available: 0))
        #expect(rig.controller.wantsRegrowthSamples)
        feedRegrowth(rig, free: 700 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func aNewBackoffAllowsRegrowthAgain() throws {
        let rig = try regrownRig()
        rig.controller.pressure(.psi(.severe))
        #expect(rig.controller.regrowth == nil)
        rig.clock.advance(rig.controller.policy.quietPeriod)
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
        // The next stall, after a calm spell, may regrow again.
        rig.clock.advance(.seconds(30))
        rig.controller.pressure(.psi(.severe))
        #expect(rig.controller.wantsRegrowthSamples)
        feedRegrowth(rig, free: 700 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func aSignalAfterAnExpiredBackoffStartsFromTheBalloonNotTheOldCeiling() throws {
        let rig = try regrownRig()
        // The quiet period ends with no step in between (the balloon was
        // at its target, nothing to wake for); then a light signal.
        rig.clock.advance(rig.controller.policy.quietPeriod)
        let given = rig.controller.pressure(.psi(.light))
        rig.run(perStep: .zero)
        // A light step (one chunk here), not everything down to the expired
        // ceiling of 0.
        #expect(given == 64 * MiB)
        #expect(rig.controller.actual == 448 * MiB)
        #expect(rig.controller.wantsRegrowthSamples)
    }
}

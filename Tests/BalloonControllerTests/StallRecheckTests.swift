// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

private let MiB: UInt64 = 1 << 20

/// A rig whose balloon just grew 128 MiB, and a light signal that came
/// 100 ms after the last chunk and was blamed on it.
private func blamedRig(_ signal: PressureSignal.Tier = .light) throws -> Rig {
    let rig = Rig()
    try rig.controller.setTarget(512 * MiB)
    #expect(rig.controller.step() == .more)
    #expect(rig.controller.step() == .more)
    rig.clock.advance(.milliseconds(100))
    #expect(rig.controller.pressure(.psi(signal)) == 0)
    return rig
}

private func stalled(someMs: Int64, fullMs: Int64? = 0, overMs: Int64 = 150) -> StallMeasure {
    StallMeasure(some: .milliseconds(someMs), full: fullMs.map { .milliseconds($0) }, over: .milliseconds(overMs))
}

/// docs/pressure.md, "Own inflation is not pressure": a blamed PSI signal is
/// measured again once growth has stopped, and answered if the stall went on.
@Suite struct StallRecheck {
    @Test func aBlamedSignalIsMeasuredAgainShortlyAfter() throws {
        let rig = try blamedRig()
        let blamedAt = rig.clock.now
        #expect(rig.controller.blamedStall == BlamedStall(tier: .light, at: blamedAt))
        #expect(rig.controller.stallRecheckDue == blamedAt + rig.controller.policy.stallRecheckDelay)
        #expect(rig.controller.step() == .waitUntil(rig.controller.quietUntil!))  // growth paused meanwhile
    }

    @Test func aStallThatGoesOnIsAnsweredThoughGrowthWasRecent() throws {
        let rig = try blamedRig()
        rig.clock.advance(.milliseconds(150))  // 250 ms after growth: within the light window
        // 7 ms of 150 is 4.7%: above the light trigger's 20 ms of 500 (4%).
        let answer = try #require(rig.controller.recheckBlamedStall(stalled(someMs: 7)))
        #expect(answer.signal == .psi(.light))
        #expect(answer.given == 64 * MiB)  // 10%, at least a chunk
        #expect(rig.controller.actual == 64 * MiB)
        #expect(rig.controller.takeEvents().contains(deflated(64 * MiB, .psiLight, actual: 64 * MiB)))
        // Answered in full: the whole first quiet period, not the breather.
        #expect(rig.controller.quietUntil! - rig.clock.now == rig.controller.policy.firstQuietPeriod)
        #expect(rig.controller.blamedStall == nil)
    }

    @Test func aStallThatEndedWithTheGrowthIsNotAnswered() throws {
        let rig = try blamedRig()
        let pause = rig.controller.quietUntil
        rig.clock.advance(.milliseconds(150))
        // 5 ms of 150 is 3.3%: below 4%.
        #expect(rig.controller.recheckBlamedStall(stalled(someMs: 5)) == nil)
        #expect(rig.controller.actual == 128 * MiB)
        #expect(rig.controller.quietUntil == pause)  // the breather only
        #expect(rig.controller.blamedStall == nil)
        #expect(rig.controller.recheckBlamedStall(stalled(someMs: 150)) == nil)  // once per blamed signal
    }

    /// The highest open trigger whose share the stall reaches answers:
    /// `full` 80 ms of 150 (53%) is past severe's 500 ms of 1 s.
    @Test(arguments: [
        (Int64(80), PressureSignal.psi(.severe), UInt64(0)),
        (Int64(20), .psi(.heavy), 64 * MiB),   // 13%: heavy's 10%, half
        (Int64(0), .psi(.light), 64 * MiB),    // some only
    ])
    func theHighestTierReachedAnswers(fullMs: Int64, signal: PressureSignal, left: UInt64) throws {
        let rig = try blamedRig(.light)
        rig.clock.advance(.milliseconds(150))
        let answer = try #require(rig.controller.recheckBlamedStall(stalled(someMs: 100, fullMs: fullMs)))
        #expect(answer.signal == signal)
        #expect(rig.controller.actual == left)
    }

    @Test func withoutAFullLineOnlySomeTriggersAreWeighed() throws {
        let rig = try blamedRig(.heavy)
        rig.clock.advance(.milliseconds(150))
        let answer = try #require(rig.controller.recheckBlamedStall(stalled(someMs: 150, fullMs: nil)))
        #expect(answer.signal == .psi(.light))
    }

    @Test func aClosedTriggerIsNotWeighed() throws {
        let rig = try blamedRig()
        rig.controller.policy.triggers[.light] = nil
        rig.clock.advance(.milliseconds(150))
        #expect(rig.controller.recheckBlamedStall(stalled(someMs: 150, fullMs: 10)) == nil)
        #expect(rig.controller.actual == 128 * MiB)
    }

    /// A 2 s fallback window keeps the trigger's share: 20 ms of 500 ms
    /// became 80 ms of 2 s, still 4%.
    @Test func aFallbackTriggerWeighsItsShare() throws {
        let rig = Rig()
        rig.controller.policy.triggers[.light] = TriggerShape(full: false, stall: .milliseconds(80), window: .seconds(2))
        try rig.controller.setTarget(512 * MiB)
        #expect(rig.controller.step() == .more)
        rig.clock.advance(.milliseconds(900))
        #expect(rig.controller.pressure(.psi(.light)) == 0)  // within 2 s: blamed
        rig.clock.advance(.milliseconds(150))
        #expect(rig.controller.recheckBlamedStall(stalled(someMs: 5)) == nil)
        #expect(rig.controller.pressure(.psi(.light)) == 0)  // blamed again
        rig.clock.advance(.milliseconds(150))
        #expect(rig.controller.recheckBlamedStall(stalled(someMs: 7))?.given == 64 * MiB)
    }

    @Test func growthSinceTheBlamedSignalVoidsTheRecheck() throws {
        let rig = try blamedRig()
        rig.clock.advance(rig.controller.policy.selfInflictedPause)
        #expect(rig.controller.step() == .more)  // the breather is over: grew
        #expect(rig.controller.recheckBlamedStall(stalled(someMs: 150)) == nil)
        #expect(rig.controller.actual == 192 * MiB)
    }

    @Test func anAnsweredStallEndsTheWaitAndAFloorBreachDoesNot() throws {
        let rig = try blamedRig()
        #expect(rig.controller.pressure(.belowFloor(available: 200 * MiB)) > 0)
        #expect(rig.controller.blamedStall != nil)
        rig.clock.advance(.milliseconds(600))
        #expect(rig.controller.pressure(.psi(.light)) > 0)
        #expect(rig.controller.blamedStall == nil)
        #expect(rig.controller.stallRecheckDue == nil)
    }

    @Test func directReclaimIsNotMeasuredAgain() throws {
        let rig = Rig()
        try rig.controller.setTarget(512 * MiB)
        #expect(rig.controller.step() == .more)
        #expect(rig.controller.pressure(.directReclaim) == 0)  // blamed
        #expect(rig.controller.blamedStall == nil)
    }
}

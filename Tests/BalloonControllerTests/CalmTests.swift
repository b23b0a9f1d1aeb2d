// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import BalloonController

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// Ending a backoff early once the guest is calm (Calm.swift,
/// docs/pressure.md "Calm"): no memory stall at all for `calmPeriod`.
@Suite struct CalmTests {
    /// A host target of 512 MiB reached, then a severe stall that gave
    /// everything back; no regrowth, so only the calm exit can end it early.
    func stalledRig() throws -> Rig {
        let rig = Rig(available: 4 * GiB)
        try rig.controller.setTarget(512 * MiB)
        rig.run()
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.severe))
        rig.run(perStep: .zero)
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.inPressureBackoff)
        return rig
    }

    /// PSI `some` total once a second for `duration`, rising by `stallPerSecond`,
    /// stepping the controller; returns the total reached.
    @discardableResult
    func feed(_ rig: Rig, from total: UInt64, stallPerSecond: Duration, for duration: Duration) -> UInt64 {
        var total = total
        let end = rig.clock.now + duration
        while rig.clock.now < end {
            rig.clock.advance(.seconds(1))
            total += UInt64(stallPerSecond / .microseconds(1))
            if rig.controller.wantsCalmSamples { rig.controller.sampleCalm(psiSomeTotal: total) }
            rig.run(perStep: .zero)
        }
        return total
    }

    @Test func aGuestThatStopsStallingGetsItsTargetBackAfterTheCalmPeriod() throws {
        let rig = try stalledRig()
        let calm = rig.controller.policy.calmPeriod
        #expect(calm < rig.controller.policy.quietPeriod)
        #expect(rig.controller.wantsCalmSamples)
        // One second short of the calm period: still held.
        feed(rig, from: 5_000_000, stallPerSecond: .zero, for: calm - .seconds(1))
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.inPressureBackoff)
        // Then the backoff ends and the balloon grows to the host's target,
        // long before the quiet period would have let it.
        feed(rig, from: 5_000_000, stallPerSecond: .zero, for: .seconds(2))
        rig.run()
        #expect(!rig.controller.inPressureBackoff)
        #expect(rig.controller.actual == 512 * MiB)
        #expect(!rig.controller.wantsCalmSamples)
    }

    @Test func aGuestStillStallingWaitsOutTheQuietPeriod() throws {
        let rig = try stalledRig()
        let policy = rig.controller.policy
        // 5 ms of stall a second (0.5%): below every trigger, so no new
        // signal, but not calm.
        feed(rig, from: 5_000_000, stallPerSecond: .milliseconds(5), for: policy.quietPeriod - .seconds(1))
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.inPressureBackoff)
        // The quiet period ends as it always did.
        rig.clock.advance(.seconds(1))
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func stallsWithinTheToleranceAreCalm() throws {
        let rig = try stalledRig()
        let calm = rig.controller.policy.calmPeriod
        feed(rig, from: 0, stallPerSecond: .microseconds(900), for: calm + .seconds(1))
        rig.run()
        #expect(!rig.controller.inPressureBackoff)
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func aNewSignalStartsTheCalmPeriodOver() throws {
        let rig = try stalledRig()
        let calm = rig.controller.policy.calmPeriod
        let total = feed(rig, from: 0, stallPerSecond: .zero, for: calm - .seconds(2))
        // A signal the samples missed (the trigger fires on a 500 ms window).
        rig.controller.pressure(.psi(.light))
        feed(rig, from: total, stallPerSecond: .zero, for: calm - .seconds(2))
        #expect(rig.controller.inPressureBackoff)
        #expect(rig.controller.actual == 0)
        feed(rig, from: total, stallPerSecond: .zero, for: .seconds(3))
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func aCounterThatGoesBackIsNotCalm() throws {
        let rig = try stalledRig()
        let calm = rig.controller.policy.calmPeriod
        feed(rig, from: 9_000_000, stallPerSecond: .zero, for: calm - .seconds(3))
        // The daemon restarted the sampler, or a fixture: from the next sample on.
        feed(rig, from: 0, stallPerSecond: .zero, for: calm - .seconds(1))
        #expect(rig.controller.inPressureBackoff)
        feed(rig, from: 0, stallPerSecond: .zero, for: .seconds(2))
        #expect(!rig.controller.inPressureBackoff)
    }

    @Test func zeroSwitchesItOff() throws {
        let rig = try stalledRig()
        rig.controller.policy.calmPeriod = .zero
        #expect(!rig.controller.wantsCalmSamples)
        rig.controller.sampleCalm(psiSomeTotal: 0)
        rig.clock.advance(rig.controller.policy.quietPeriod - .seconds(1))
        rig.controller.sampleCalm(psiSomeTotal: 0)
        rig.run()
        #expect(rig.controller.actual == 0)
        rig.clock.advance(.seconds(1))
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
    }
}

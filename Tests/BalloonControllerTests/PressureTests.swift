// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// A rig with a 512 MiB balloon whose last growth is long past.
private func settledRig(_ size: UInt64 = 512 * MiB) throws -> Rig {
    let rig = Rig()
    try rig.controller.setTarget(size)
    rig.run()
    _ = rig.controller.takeEvents()
    rig.clock.advance(.seconds(10))
    return rig
}

@Suite struct PressureResponse {
    @Test func lightSignalGivesBackTenPercentButAtLeastAChunk() throws {
        let rig = try settledRig(1 * GiB)
        #expect(rig.controller.pressure(.psi(.light)) == 1 * GiB / 100 * 10)
        let small = try settledRig(128 * MiB)
        #expect(small.controller.pressure(.psi(.light)) == 64 * MiB)  // one chunk
        #expect(small.controller.takeEvents() == [deflated(64 * MiB, .psiLight, actual: 64 * MiB)])
    }

    @Test func heavyGivesBackHalfAndSevereEverything() throws {
        let heavy = try settledRig()
        #expect(heavy.controller.pressure(.psi(.heavy)) == 256 * MiB)
        #expect(heavy.controller.actual == 256 * MiB)
        let severe = try settledRig()
        #expect(severe.controller.pressure(.psi(.severe)) == 512 * MiB)
        #expect(severe.controller.actual == 0)
    }

    @Test func directReclaimIsAStepAndOOMKillIsEverything() throws {
        let reclaim = try settledRig()
        #expect(reclaim.controller.pressure(.directReclaim) == 64 * MiB)
        let oom = try settledRig()
        #expect(oom.controller.pressure(.oomKill) == 512 * MiB)
        #expect(oom.controller.takeEvents() == [deflated(512 * MiB, .oomKill, actual: 0)])
    }

    @Test func belowTheFloorDeflatesToFloorPlusMargin() throws {
        let rig = try settledRig()
        // Floor 256 MiB + margin 64 MiB = 320 MiB wanted; 200 MiB available.
        #expect(rig.controller.pressure(.belowFloor(available: 200 * MiB)) == 120 * MiB)
        #expect(rig.controller.actual == 392 * MiB)
        // Already above floor + margin: nothing to give back.
        #expect(rig.controller.pressure(.belowFloor(available: 400 * MiB)) == 0)
    }

    @Test func aLockEndedByPressureIsNoRefusalAndTheSignalIsBlamedOnIt() throws {
        let rig = Rig()
        try rig.controller.setTarget(512 * MiB)
        #expect(rig.controller.step() == .more)  // 64 MiB, long before the signal
        rig.clock.advance(.seconds(10))
        _ = rig.controller.takeEvents()
        rig.reserver.failNext = ReserveError(.interrupted, cause: FakeCause("mlock a chunk: a pressure trigger fired first"))
        // Nothing moved, nothing refused: no TARGET_UNREACHABLE, no retry wait.
        #expect(rig.controller.step() == .more)
        #expect(rig.controller.actual == 64 * MiB)
        #expect(rig.controller.takeEvents().isEmpty)
        #expect(rig.controller.reserveFailure == nil)
        // The signal that ended the lock is the lock's: growth pauses, the
        // balloon keeps what it held (a light signal would give a chunk back).
        #expect(rig.controller.pressure(.psi(.light)) == 0)
        #expect(rig.controller.step() == .waitUntil(rig.controller.quietUntil!))
        #expect(rig.controller.actual == 64 * MiB)
    }

    @Test func pressureRightAfterOwnGrowthStopsGrowthButDeflatesNothing() throws {
        let rig = Rig()
        try rig.controller.setTarget(512 * MiB)
        #expect(rig.controller.step() == .more)  // grew 64 MiB just now
        rig.clock.advance(.milliseconds(500))
        #expect(rig.controller.pressure(.psi(.heavy)) == 0)
        #expect(rig.controller.actual == 64 * MiB)
        #expect(rig.controller.takeEvents().allSatisfy { if case .deflated = $0 { false } else { true } })
        // ... and growth pauses for a breather, not the whole quiet period.
        #expect(rig.controller.step() == .waitUntil(rig.controller.quietUntil!))
        #expect(rig.controller.actual == 64 * MiB)
        #expect(rig.controller.reason?.code == .pressure)
        #expect(rig.controller.quietUntil! - rig.clock.now == rig.controller.policy.selfInflictedPause)
        rig.clock.advance(rig.controller.policy.selfInflictedPause)
        #expect(rig.controller.step() == .more)
        #expect(rig.controller.actual == 128 * MiB)
        // A floor breach or an OOM kill is answered even right after growth.
        #expect(rig.controller.pressure(.oomKill) == 128 * MiB)
    }

    @Test func pressureThatOutlastsTheBreatherIsAnsweredInFull() throws {
        let rig = Rig()
        try rig.controller.setTarget(512 * MiB)
        #expect(rig.controller.step() == .more)
        rig.controller.pressure(.psi(.heavy))        // blamed on the growth
        rig.clock.advance(.seconds(3))                     // no growth since: real pressure
        #expect(rig.controller.pressure(.psi(.heavy)) == 64 * MiB)  // half, at least a chunk
        // The breather was no stall of its own: this is the first after a calm spell.
        #expect(rig.controller.quietUntil! - rig.clock.now == rig.controller.policy.firstQuietPeriod)
    }

    /// A PSI signal is blamed on growth within its trigger's window: a light
    /// signal (500 ms window) 0.7 s after growth is answered, a heavy one
    /// (1 s), a light one on a 2 s fallback window and direct reclaim (2 s)
    /// are still blamed.
    @Test(arguments: [
        (PressureSignal.psi(.light), Duration.milliseconds(500), true),
        (.psi(.heavy), .seconds(1), false),
        (.psi(.light), .seconds(2), false),
        (.directReclaim, .milliseconds(500), false),
    ])
    func growthIsBlamedForStallsWithinTheTriggersWindow(signal: PressureSignal, window: Duration, answered: Bool) throws {
        let rig = Rig()
        rig.controller.policy.triggers[signal == .psi(.heavy) ? .heavy : .light]!.window = window
        try rig.controller.setTarget(512 * MiB)
        #expect(rig.controller.step() == .more)  // grew 64 MiB just now
        rig.clock.advance(.milliseconds(700))
        #expect(rig.controller.pressure(signal) == (answered ? 64 * MiB : 0))
        #expect(rig.controller.actual == (answered ? 0 : 64 * MiB))
    }

    /// The next light signal after a blamed one (a trigger fires at most once
    /// a window) is answered: growth paused at the first.
    @Test func theLightSignalAfterABlamedOneIsAnswered() throws {
        let rig = Rig()
        try rig.controller.setTarget(512 * MiB)
        #expect(rig.controller.step() == .more)
        rig.clock.advance(.milliseconds(300))
        #expect(rig.controller.pressure(.psi(.light)) == 0)
        #expect(rig.controller.step() == .waitUntil(rig.controller.quietUntil!))  // no growth in the breather
        rig.clock.advance(.milliseconds(500))
        #expect(rig.controller.pressure(.psi(.light)) == 64 * MiB)
    }

    @Test func reinflatesOnlyAfterAQuietPeriod() throws {
        let rig = try settledRig()
        rig.controller.pressure(.psi(.heavy))
        rig.run()
        let events = rig.controller.takeEvents()
        #expect(events.last == .targetUnreachable(
            BalloonProgress(actual: 256 * MiB, target: 512 * MiB),
            reason: StopReason(code: .pressure, desc: "memory pressure: the balloon is held at \(256 * MiB) bytes until the guest has been quiet for the quiet period (FirstQuietPeriod=, doubling up to QuietPeriod=)")))
        // 10 s later another signal: the quiet period (15 s) starts over.
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.light))
        rig.run()
        #expect(rig.controller.actual == 192 * MiB)
        rig.clock.advance(.seconds(14))
        rig.run()
        #expect(rig.controller.actual == 192 * MiB, "grew before the guest was quiet for 15 s")
        rig.clock.advance(.seconds(2))
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.pressureCeiling == nil)
        #expect(rig.controller.takeEvents().last == reached(512 * MiB, 512 * MiB))
    }

    /// A stall soon after the balloon grew back says the quiet period was too
    /// short: the next is twice as long, up to QuietPeriod=; after a calm
    /// spell it starts from FirstQuietPeriod= again.
    @Test func theQuietPeriodDoublesWhenPressureComesBackSoon() throws {
        let rig = try settledRig()
        func hold() -> Duration { rig.controller.quietUntil! - rig.clock.now }
        func stallThenGrowBack(after: Duration) -> Duration {
            rig.clock.advance(after)
            rig.controller.pressure(.psi(.heavy))
            let length = hold()
            rig.clock.advance(length)
            rig.run()
            return length
        }
        #expect(stallThenGrowBack(after: .zero) == .seconds(15))
        #expect(rig.controller.actual == 512 * MiB)
        #expect(stallThenGrowBack(after: .seconds(29)) == .seconds(30))  // within 2 × 15 s of the end
        #expect(stallThenGrowBack(after: .seconds(59)) == .seconds(30))  // QuietPeriod= (30 s) is the longest
        #expect(stallThenGrowBack(after: .seconds(61)) == .seconds(15))  // a calm spell
        #expect(stallThenGrowBack(after: .seconds(31)) == .seconds(15))  // more than 2 × 15 s after
        // A longer QuietPeriod= lets it double further.
        rig.controller.policy.quietPeriod = .seconds(60)
        #expect(stallThenGrowBack(after: .seconds(29)) == .seconds(30))
        #expect(stallThenGrowBack(after: .seconds(59)) == .seconds(60))
        #expect(stallThenGrowBack(after: .seconds(10)) == .seconds(60))
        #expect(stallThenGrowBack(after: .seconds(121)) == .seconds(15))
        // A signal within the hold restarts it at the same length, without doubling.
        rig.clock.advance(.seconds(5))
        rig.controller.pressure(.psi(.light))
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.light))
        #expect(hold() == .seconds(30))  // 5 s after the last hold ended: this episode's is 30 s
        rig.clock.advance(.seconds(20))
        rig.controller.pressure(.psi(.light))
        #expect(hold() == .seconds(30))
    }

    @Test func equalPeriodsGiveAFixedQuietPeriod() throws {
        let rig = try settledRig()
        rig.controller.policy.firstQuietPeriod = .seconds(120)  // longer than QuietPeriod=: acts as it
        rig.controller.pressure(.psi(.heavy))
        #expect(rig.controller.quietUntil! - rig.clock.now == .seconds(30))
        rig.clock.advance(.seconds(31))
        rig.run()
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.heavy))
        #expect(rig.controller.quietUntil! - rig.clock.now == .seconds(30))
    }

    @Test func aLostHolderIsAccountedAndHolds() throws {
        let rig = try settledRig()
        rig.reserver.shrink(by: 64 * MiB)  // the kernel took it
        #expect(rig.controller.pressure(.holderKilled(bytes: 64 * MiB)) == 64 * MiB)
        #expect(rig.controller.pressureDeflatedBytes == 64 * MiB)
        #expect(rig.controller.takeEvents() == [deflated(64 * MiB, .holderKilled, actual: 448 * MiB)])
        rig.run()
        #expect(rig.controller.actual == 448 * MiB)
    }

    @Test func floorCheckIntervalAdaptsToHeadroom() throws {
        let empty = Rig()
        #expect(empty.controller.floorCheckInterval(available: 100 * MiB) == nil)
        let rig = try settledRig(64 * MiB)
        #expect(rig.controller.floorCheckInterval(available: 300 * MiB) == .milliseconds(100))
        #expect(rig.controller.floorCheckInterval(available: 450 * MiB) == .milliseconds(250))
        #expect(rig.controller.floorCheckInterval(available: 700 * MiB) == .milliseconds(500))
        #expect(rig.controller.floorCheckInterval(available: 4 * GiB) == .seconds(1))
    }
}

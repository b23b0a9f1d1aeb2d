// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// How long pressure holds the free-memory mode back (docs/free-memory.md):
/// a floor deflate only for a short hold-off, a stall for the quiet period.
@Suite struct FreeMemoryBackoffTests {
    /// The mode on, grown to 512 MiB of held free memory.
    func grownRig() -> Rig {
        let rig = Rig(available: 4 * GiB)
        rig.controller.enableFreeMemory(FreeMemoryPolicy(cushion: 64 * MiB))
        feed(rig, free: 592 * MiB, for: .seconds(2))
        rig.run()
        return rig
    }

    /// MemFree samples every 250 ms for `duration`, stepping the controller.
    /// `free`: MemFree with an empty balloon; each sample is that less the
    /// balloon, as in a guest.
    func feed(_ rig: Rig, free: UInt64, for duration: Duration) {
        let end = rig.clock.now + duration
        while rig.clock.now <= end {
            let actual = rig.controller.actual
            rig.controller.sampleFreeMemory(memFree: free > actual ? free - actual : 0)
            rig.run(perStep: .zero)
            rig.clock.advance(.milliseconds(250))
        }
    }

    @Test func afterAFloorDeflateTheModeGrowsAgainAfterTheHoldOff() {
        let rig = grownRig()
        #expect(rig.controller.actual == 512 * MiB)
        rig.clock.advance(.seconds(10))
        // A workload took the guest's memory: the floor (256 MiB, margin
        // 64 MiB) gives back 320 MiB.
        rig.controller.pressure(.belowFloor(available: 0))
        #expect(rig.controller.actual == 192 * MiB)
        let policy = rig.controller.policy
        // The workload ended: 320 MiB is free above the cushion and its
        // margin again. Not taken before it stayed free for the settle
        // delay (and any hold-off)...
        let wait = policy.freeMemoryFloorHoldOff + FreeMemoryPolicy(cushion: 64 * MiB).settleDelay
        feed(rig, free: 592 * MiB, for: wait - .milliseconds(250))
        #expect(rig.controller.actual == 192 * MiB)
        // ...but then at once, long before the quiet period ends (which
        // still holds the host's target).
        feed(rig, free: 592 * MiB, for: .seconds(1))
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.inPressureBackoff)
        #expect(rig.controller.freeMemoryHeld == 512 * MiB)
    }

    @Test func theHostsTargetStillWaitsTheQuietPeriodAfterAFloorDeflate() throws {
        let rig = Rig(available: 4 * GiB)
        try rig.controller.setTarget(512 * MiB)
        rig.run()
        rig.controller.enableFreeMemory(FreeMemoryPolicy(cushion: 64 * MiB))
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.belowFloor(available: rig.controller.limits.availableFloor - 128 * MiB))
        #expect(rig.controller.actual == 320 * MiB)
        // No free memory to take: the mode's hold-off ends, the ceiling stays.
        feed(rig, free: 384 * MiB, for: .seconds(10))
        #expect(rig.controller.actual == 320 * MiB)
        #expect(rig.controller.effectiveTarget == 320 * MiB)
        rig.clock.advance(rig.controller.policy.quietPeriod)
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func afterAStallTheModeWaitsTheWholeQuietPeriod() {
        let rig = grownRig()
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.severe))
        #expect(rig.controller.actual == 0)
        let quiet = try! #require(rig.controller.stallHoldLength)
        #expect(quiet == rig.controller.policy.firstQuietPeriod)
        feed(rig, free: 592 * MiB, for: quiet - .milliseconds(500))
        #expect(rig.controller.actual == 0)
        feed(rig, free: 592 * MiB, for: .seconds(3))
        #expect(rig.controller.actual == 512 * MiB)
    }

    @Test func aFloorBreachDoesNotShortenAStallsBackoff() {
        let rig = grownRig()
        rig.clock.advance(.seconds(10))
        rig.controller.pressure(.psi(.heavy))
        rig.clock.advance(.seconds(1))
        rig.controller.pressure(.belowFloor(available: 0))
        #expect(rig.controller.actual == 0)
        feed(rig, free: 592 * MiB, for: rig.controller.policy.firstQuietPeriod - .seconds(2))  // the stall's hold, from 1 s before
        #expect(rig.controller.actual == 0)
    }

    @Test func aStallOfTheModesOwnGrowthPausesItOnlyBriefly() {
        let rig = Rig(available: 4 * GiB)
        rig.controller.enableFreeMemory(FreeMemoryPolicy(cushion: 64 * MiB))
        feed(rig, free: 592 * MiB, for: .seconds(2))
        // Right after the growth: blamed on it, nothing given back.
        rig.controller.pressure(.psi(.light))
        #expect(rig.controller.actual == 512 * MiB)
        // 80 MiB free above the cushion and its margin.
        feed(rig, free: 672 * MiB, for: rig.controller.policy.selfInflictedPause + .milliseconds(2500))
        #expect(rig.controller.actual == 592 * MiB)
    }
}

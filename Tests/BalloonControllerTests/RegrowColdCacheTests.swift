// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// How much page cache the daemon reclaims for a backoff's regrowth
/// (`regrowthColdCacheRoom`, `[Pressure] RegrowColdCache=`): what regrowth
/// may still take toward the host's target, within the floor's stop line,
/// less what is already free for it; nothing outside a backoff that regrows.
@Suite struct RegrowColdCacheTests {
    static let cushion = 64 * MiB
    static let settled = cushion + FreeMemoryPolicy(cushion: cushion).growthMargin

    /// A host target of 512 MiB reached, regrowth allowed, then a severe
    /// stall that gave everything back; the guest then has `available`.
    func stalledRig(available: UInt64 = 4 * GiB, regrowth: Bool = true) throws -> Rig {
        let rig = try regrowthStalledRig(cushion: Self.cushion, regrowth: regrowth)
        rig.probe.available = available
        return rig
    }

    @Test func itIsWhatRegrowthMayStillTakeLessWhatIsFreeAlready() throws {
        let rig = try stalledRig()
        // Nothing free above the cushion: the whole way to the host's target.
        #expect(rig.controller.regrowthColdCacheRoom(memFree: Self.cushion) == 512 * MiB)
        // 100 MiB free above the cushion and its margin: regrowth takes that
        // without a reclaim, so only the rest is asked of the cache.
        #expect(rig.controller.regrowthColdCacheRoom(memFree: Self.settled + 100 * MiB) == 412 * MiB)
        // More free than the target needs: nothing to reclaim.
        #expect(rig.controller.regrowthColdCacheRoom(memFree: Self.settled + GiB) == 0)
    }

    @Test func itShrinksAsRegrowthTakesMemory() throws {
        let rig = try stalledRig()
        // 200 MiB freed (by a reclaim) and settled: regrowth takes it...
        feedRegrowth(rig, free: Self.settled + 200 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == 200 * MiB)
        // ...and the room left is the rest of the way to the target.
        #expect(rig.controller.regrowthColdCacheRoom(memFree: Self.settled) == 312 * MiB)
    }

    @Test func aTargetThatIsNotAWholeGranuleIsReachedToo() throws {
        // 486.13 MiB, as 50% of a guest's MemTotal: regrowth takes whole 2 MiB
        // granules of settled free memory, so after 484 MiB the last 2.13 MiB
        // need two granules free, not 2.13 MiB (a VM test stayed 2 MiB short).
        let rig = try stalledRig()
        let target: UInt64 = 509_747_200
        try rig.controller.setTarget(target)
        feedRegrowth(rig, free: Self.settled + 484 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == 484 * MiB)
        #expect(rig.controller.regrowthColdCacheRoom(memFree: Self.settled) == 4 * MiB)
        // That much freed and settled: the whole target.
        feedRegrowth(rig, free: Self.settled + 484 * MiB + 4 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == target)
        #expect(rig.controller.regrowthColdCacheRoom(memFree: 0) == 0)
    }

    @Test func itStopsAtTheFloorsStopLine() throws {
        // Growth stops 16 MiB above the floor (256 MiB here): with 456 MiB
        // available only 184 MiB could become balloon, so no more is reclaimed.
        let floor = 256 * MiB
        let rig = try stalledRig(available: floor + 200 * MiB)
        let stopLine = floor + rig.controller.policy.growthHeadroom
        #expect(rig.controller.regrowthColdCacheRoom(memFree: 0) == floor + 200 * MiB - stopLine)
        rig.probe.available = stopLine
        #expect(rig.controller.regrowthColdCacheRoom(memFree: 0) == 0)
    }

    @Test func nothingWithoutRegrowthOrOutsideABackoff() throws {
        let off = try stalledRig(regrowth: false)
        #expect(off.controller.regrowthColdCacheRoom(memFree: 0) == 0)
        let rig = try stalledRig()
        rig.clock.advance(rig.controller.policy.quietPeriod)
        #expect(rig.controller.regrowthColdCacheRoom(memFree: 0) == 0)
        // And none when no backoff ever started.
        let calm = Rig(available: 4 * GiB)
        calm.controller.regrowthPolicy = FreeMemoryPolicy(cushion: Self.cushion)
        try calm.controller.setTarget(512 * MiB)
        #expect(calm.controller.regrowthColdCacheRoom(memFree: 0) == 0)
    }

    @Test func nothingOnceRegrowthWasWrong() throws {
        let rig = try stalledRig()
        // Regrowth takes 200 MiB, then a stall says that was wrong.
        feedRegrowth(rig, free: Self.settled + 200 * MiB, for: .seconds(4))
        #expect(rig.controller.actual == 200 * MiB)
        rig.controller.pressure(.psi(.light))
        rig.run(perStep: .zero)
        #expect(rig.controller.actual == 0)
        // The cache stays the guest's for the rest of the quiet period.
        #expect(rig.controller.regrowthColdCacheRoom(memFree: 0) == 0)
    }

    @Test func nothingPastTheHostsTargetWhenItFalls() throws {
        let rig = try stalledRig()
        // The host lowers its target below nothing regrown yet: room 128 MiB.
        try rig.controller.setTarget(128 * MiB)
        #expect(rig.controller.regrowthColdCacheRoom(memFree: 0) == 128 * MiB)
        try rig.controller.setTarget(0)
        #expect(rig.controller.regrowthColdCacheRoom(memFree: 0) == 0)
    }
}

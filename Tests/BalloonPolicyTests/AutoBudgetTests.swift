// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonTestSupport
import Testing

/// Over a `HostMemory=` budget, `auto` takes the overshoot as well as the
/// reserve: MemAvailable-like `available` stops at 0 and alone would have
/// it take back a reserve's worth a round however far over the host is.
@Suite struct AutoBudgetTests {
    func round(overBudget: UInt64) -> TargetChange? {
        var tuning = AutoTuning()
        tuning.trimRate = 0
        tuning.maxStep = GiB
        var policy = AutoPolicy(reserve: 32 * MiB, tuning: tuning)
        let host = HostSample(at: .seconds(1), total: 2 * GiB, available: 0, overBudget: overBudget)
        let g = GuestState(
            name: "g", ramSize: GiB, limits: GuestLimits(min: 0, max: GiB, shares: 1000), connected: true, target: 0, actual: 0,
            sample: GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 900 * MiB, balloonActual: 0))
        return policy.round(host: host, guests: [g], now: .seconds(1)).first
    }

    @Test func theOvershootIsTakenInOneRound() throws {
        let reserveOnly = try #require(round(overBudget: 0))
        #expect(reserveOnly.target == 32 * MiB)
        let over = try #require(round(overBudget: 300 * MiB))
        #expect(over.target == 332 * MiB)
        #expect(over.reason.contains("332 MiB"))
    }
}

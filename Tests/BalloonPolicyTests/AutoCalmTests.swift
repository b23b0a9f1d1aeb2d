// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonTestSupport
import Testing

/// `auto`'s hold-off after pressure ends early once the guest is calm: no
/// stall at all (PSI `some` total) for `calmAfter`, when its balloond ends its
/// own backoff too (docs/policy.md, docs/pressure.md "Calm").
@Suite struct AutoCalmTests {
    let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 4 * GiB)

    func state(target: UInt64, _ sample: GuestSample) -> GuestState {
        GuestState(name: "g", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB),
                   connected: true, target: target, actual: target, sample: sample)
    }

    /// Pressure at 1 s, then from 2 s a sample a second: 800 MiB available, of
    /// which only 100 MiB free (the rest page cache the workload left), with
    /// `stallPerSecond` of PSI `some` stall; a round after each. Returns the
    /// first time a round took memory, if any within `seconds`.
    func firstTake(stallPerSecond: Duration, seconds: Int, tuning: AutoTuning = AutoTuning()) throws -> Duration? {
        var policy = AutoPolicy(reserve: 512 * MiB, tuning: tuning)
        var g = state(target: 300 * MiB, GuestSample(
            at: .seconds(1), memTotal: 700 * MiB, memAvailable: 20 * MiB, psiSomeTotal: 9_000_000, memFree: 10 * MiB))
        let fast = try #require(policy.sampled(guest: g, host: host, now: .seconds(1)).first, "pressure gives memory back")
        g.target = fast.target
        g.actual = fast.target
        var total: UInt64 = 9_000_000
        for s in 2...seconds {
            let now = Duration.seconds(s)
            total += UInt64(stallPerSecond / .microseconds(1))
            g.sample = GuestSample(at: now, memTotal: GiB, memAvailable: 800 * MiB, psiSomeTotal: total,
                                   memFree: 100 * MiB, balloonActual: g.actual)
            #expect(policy.sampled(guest: g, host: host, now: now).isEmpty, "no new pressure at \(s) s")
            if let change = policy.round(host: host, guests: [g], now: now).first {
                #expect(change.target > g.target)
                return now
            }
        }
        return nil
    }

    @Test func aCalmGuestsPageCacheIsTakenAfterTheCalmPeriod() throws {
        let calm = AutoTuning().calmAfter
        #expect(calm < AutoTuning().holdOff)
        // The pressure sample's own interval counts as a stall: calm from 1 s.
        let at = try firstTake(stallPerSecond: .zero, seconds: 40)
        #expect(at == .seconds(1) + calm)
    }

    @Test func aGuestStillStallingIsHeldOffTheWholeHoldOff() throws {
        // 0.5% stall a second: under the interval rule's 1% (no new
        // pressure), over the calm tolerance (0.1%).
        let at = try firstTake(stallPerSecond: .milliseconds(5), seconds: 40)
        #expect(at == .seconds(1) + AutoTuning().holdOff)
    }

    @Test func strayMicrosecondsAreCalm() throws {
        let at = try firstTake(stallPerSecond: .microseconds(500), seconds: 40)
        #expect(at == .seconds(1) + AutoTuning().calmAfter)
    }

    @Test func aCalmPeriodAsLongAsTheHoldOffChangesNothing() throws {
        var tuning = AutoTuning()
        tuning.calmAfter = tuning.holdOff
        let at = try firstTake(stallPerSecond: .zero, seconds: 40, tuning: tuning)
        #expect(at == .seconds(1) + tuning.holdOff)
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonTestSupport
import Testing

/// After pressure, `auto` takes only free memory from the guest for a
/// hold-off that starts short and doubles when pressure comes back soon, as
/// the guest's own quiet period does (docs/policy.md).
@Suite struct AutoHoldOffTests {
    let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 4 * GiB)
    /// A host 1 GiB over its budget: a round takes what it can.
    let short = HostSample(at: .seconds(1), total: 8 * GiB, available: 0, overBudget: GiB)

    func guest(target: UInt64) -> GuestState {
        GuestState(name: "g", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB, shares: 1000),
                   connected: true, target: target, actual: target, sample: nil)
    }

    func spareStalledCache(_ on: Bool) -> AutoTuning {
        var tuning = AutoTuning()
        tuning.spareStalledCache = on
        return tuning
    }

    /// Low MemAvailable at `at`: pressure, and the target goes down.
    func stall(_ policy: inout AutoPolicy, _ g: inout GuestState, at s: Int64) throws {
        g.sample = GuestSample(at: .seconds(s), memTotal: GiB, memAvailable: 20 * MiB, memFree: 10 * MiB, balloonActual: g.actual)
        let change = try #require(policy.sampled(guest: g, host: host, now: .seconds(s)).first, "pressure at \(s) s gives memory back")
        g.target = change.target
        g.actual = change.target
    }

    /// A round at `at` when the workload has ended but left its page cache:
    /// 800 MiB available, 100 MiB of it free. Whether it took anything.
    func takes(_ policy: inout AutoPolicy, _ g: inout GuestState, at s: Int64, host: HostSample? = nil) -> Bool {
        g.sample = GuestSample(at: .seconds(s), memTotal: GiB, memAvailable: 800 * MiB, memFree: 100 * MiB, balloonActual: g.actual)
        guard let change = policy.round(host: host ?? self.host, guests: [g], now: .seconds(s)).first else { return false }
        g.target = change.target
        g.actual = change.target
        return true
    }

    @Test func theHoldOffDoublesWhenPressureComesBackSoon() throws {
        var policy = AutoPolicy()
        var g = guest(target: 300 * MiB)
        try stall(&policy, &g, at: 1)
        #expect(!takes(&policy, &g, at: 3), "cache is not taken within the first hold-off")
        #expect(!takes(&policy, &g, at: 15))
        #expect(takes(&policy, &g, at: 17), "15 s after the stall the cache is spare again")
        // Back 4 s after that hold ended: 30 s this time.
        try stall(&policy, &g, at: 20)
        #expect(!takes(&policy, &g, at: 40))
        #expect(!takes(&policy, &g, at: 49))
        #expect(takes(&policy, &g, at: 51))
        // Back within 60 s of its end (at 50): 60 s, the longest.
        try stall(&policy, &g, at: 100)
        #expect(!takes(&policy, &g, at: 159))
        #expect(takes(&policy, &g, at: 161))
        // Long after the last hold ended, it starts short again.
        try stall(&policy, &g, at: 400)
        #expect(!takes(&policy, &g, at: 414))
        #expect(takes(&policy, &g, at: 416))
    }

    /// More signals within one hold restart it at the same length.
    @Test func signalsWithinAHoldRestartIt() throws {
        var policy = AutoPolicy()
        var g = guest(target: 600 * MiB)
        try stall(&policy, &g, at: 1)
        try stall(&policy, &g, at: 12)
        #expect(!takes(&policy, &g, at: 26), "the hold runs 15 s from the last signal")
        #expect(takes(&policy, &g, at: 28))
    }

    /// While the host is short and no other guest can cover it, a guest
    /// holding off gives its page cache as well, down to its (boosted)
    /// headroom and band; while the host is not short it keeps it.
    @Test func aShortHostTakesTheCacheOfAGuestHoldingOff() throws {
        var policy = AutoPolicy()
        var g = guest(target: 300 * MiB)
        try stall(&policy, &g, at: 1)
        // 3 s later: 800 MiB available, 100 MiB of it free (page cache).
        g.sample = GuestSample(at: .seconds(3), memTotal: GiB, memAvailable: 800 * MiB, memFree: 100 * MiB, balloonActual: g.actual)
        #expect(policy.round(host: host, guests: [g], now: .seconds(3)).isEmpty, "not short: the cache stays")
        let change = try #require(policy.round(host: short, guests: [g], now: .seconds(3)).first, "short: the cache is taken")
        // At most a step (128 MiB) a round, and from the cache: free memory
        // above headroom and band is none.
        #expect(change.target == g.target + 128 * MiB)
        #expect(change.reason.contains("host short"))
    }

    /// `SpareStalledCache=yes`: a guest that stalls within 5 s of a round
    /// taking its cache keeps its cache for the rest of that hold-off; with
    /// `no` a short host takes it again as soon as `pressured` ends (two
    /// rounds), the churn bench-host showed (docs/policy-bench.md).
    @Test(arguments: [true, false]) func aStallOnTakenCacheSparesTheCache(spare: Bool) throws {
        var policy = AutoPolicy(tuning: spareStalledCache(spare))
        var g = guest(target: 300 * MiB)
        try stall(&policy, &g, at: 1)
        #expect(takes(&policy, &g, at: 3, host: short), "holding off, the short host takes its cache")
        try stall(&policy, &g, at: 4)
        #expect(takes(&policy, &g, at: 7, host: short) == !spare, "the stall 1 s after the take spares the cache: \(spare)")
        #expect(takes(&policy, &g, at: 20, host: short), "the hold-off restarted at 4 s ended at 19 s")
    }

    /// A stall long after the cache was taken is not blamed on the take.
    @Test func aLaterStallDoesNotSpareTheCache() throws {
        var policy = AutoPolicy(tuning: spareStalledCache(true))
        var g = guest(target: 300 * MiB)
        try stall(&policy, &g, at: 1)
        #expect(takes(&policy, &g, at: 3, host: short))
        try stall(&policy, &g, at: 10)
        #expect(takes(&policy, &g, at: 13, host: short), "7 s after the take: taken again")
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonTestSupport
import Testing

@Suite struct AutoPolicyTests {
    func auto(reserve: UInt64 = 512 * MiB, maxStep: UInt64? = nil) -> any HostPolicy {
        makePolicy(PolicySettings(mode: .auto, hostReserve: reserve, maxStep: maxStep))
    }

    @Test func makePolicyGivesEachMode() {
        #expect(makePolicy(PolicySettings(mode: .auto)).mode == .auto)
        #expect(makePolicy(PolicySettings(mode: .auto)).interval == .seconds(1))
        #expect(makePolicy(PolicySettings(mode: .proxmox)).mode == .proxmox)
        #expect(makePolicy(PolicySettings(mode: .proxmox)).interval == .seconds(10))
        #expect(makePolicy(PolicySettings(mode: .mom)).mode == .mom)
        #expect(makePolicy(PolicySettings(mode: .mom, interval: .seconds(3))).interval == .seconds(3))
    }

    @Test func idleGuestsGiveTheirSpareMemoryDownToHeadroom() {
        var sim = Simulation([SimGuest("a") { _ in 300 * MiB }], policy: auto(), budget: 8 * GiB)
        sim.run(seconds: 30)
        let g = sim.guests[0]
        let available = g.sample!.memAvailable
        // Headroom 102.4 MiB (10% of 1 GiB), band 32 MiB: it settles in between.
        #expect(available >= 102 * MiB && available <= 135 * MiB, "available \(available / MiB) MiB")
        #expect(g.target > 500 * MiB)
        #expect(g.oomKills == 0)
    }

    @Test func neverBelowMinNorAboveMax() {
        var rng = SeededRandom(seed: 11)
        // Phases of random demand, 0 to 900 MiB, 60 s each; a tight budget so
        // the host is often short.
        let phases = (0..<20).map { _ in UInt64.random(in: 0...900, using: &rng) * MiB }
        let schedule: (Duration) -> UInt64 = { phases[Int($0.components.seconds / 60) % phases.count] }
        var capped = SimGuest("capped", min: 300 * MiB, demand: schedule)
        capped.limits.max = 800 * MiB
        let guests = [SimGuest("a", min: 256 * MiB, demand: schedule), capped,
                      SimGuest("c", min: 512 * MiB) { _ in 0 }]
        var sim = Simulation(guests, policy: auto(), budget: 2 * GiB)
        sim.run(seconds: 1_200)
        #expect(!sim.changes.isEmpty)
        for (_, change, _) in sim.changes {
            let g = sim.guests.first { $0.name == change.guest }!
            #expect(g.ramSize - change.target >= g.limits.min, "\(change)")
            #expect(g.ramSize - change.target <= g.limits.max, "\(change)")
        }
        // The idle guest sits at its Min.
        #expect(sim.guests[2].target == GiB - 512 * MiB)
    }

    @Test func pressureGetsMemoryBackFromTheSampleThatShowsIt() {
        var sim = Simulation([SimGuest("a") { $0 < .seconds(60) ? 300 * MiB : 500 * MiB }], policy: auto(), budget: 8 * GiB)
        sim.run(seconds: 59)
        let before = sim.guests[0].target
        #expect(before > 400 * MiB)
        sim.run(seconds: 1)
        // The first sample after the jump: `sampled` lowers the target, no round needed.
        let fast = sim.changes.filter { $0.at == .seconds(60) && $0.fast }
        #expect(fast.count == 1)
        #expect(fast.first!.change.target < before)
        #expect(fast.first!.change.reason.contains("pressure"))
        #expect(GiB - sim.guests[0].target >= 500 * MiB + sim.guests[0].kernel)
        sim.run(seconds: 120)
        #expect(sim.guests[0].oomKills == 0)
        // Having shown pressure, it keeps more than before.
        #expect(sim.guests[0].sample!.memAvailable > 102 * MiB)
    }

    func state(target: UInt64, _ sample: GuestSample, shares: UInt32 = 1000) -> GuestState {
        GuestState(name: "g", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB, shares: shares),
                   connected: true, target: target, actual: target, sample: sample)
    }

    @Test(arguments: [
        // PSI some rising past 1%.
        (GuestSample(at: .seconds(1), memTotal: 700 * MiB, memAvailable: 300 * MiB, psiSomeAvg10: 0.2),
         GuestSample(at: .seconds(2), memTotal: 700 * MiB, memAvailable: 300 * MiB, psiSomeAvg10: 2.5)),
        // 15 ms of stall in the last second (1.5%), long before avg10 shows it.
        (GuestSample(at: .seconds(1), memTotal: 700 * MiB, memAvailable: 300 * MiB, psiSomeAvg10: 0, psiSomeTotal: 40_000),
         GuestSample(at: .seconds(2), memTotal: 700 * MiB, memAvailable: 300 * MiB, psiSomeAvg10: 0, psiSomeTotal: 55_000)),
        // No PSI in the guest kernel: file refaults jump (10,000 a second).
        (GuestSample(at: .seconds(1), memTotal: 700 * MiB, memAvailable: 300 * MiB, fileRefaults: 1_000),
         GuestSample(at: .seconds(2), memTotal: 700 * MiB, memAvailable: 300 * MiB, fileRefaults: 11_000)),
        // Major faults jump.
        (GuestSample(at: .seconds(1), memTotal: 700 * MiB, memAvailable: 300 * MiB, majorFaults: 0),
         GuestSample(at: .seconds(2), memTotal: 700 * MiB, memAvailable: 300 * MiB, majorFaults: 4_000)),
    ])
    func eachPressureSignalGivesBack(first: GuestSample, second: GuestSample) {
        var policy = auto()
        let host = HostSample(at: .seconds(2), total: 8 * GiB, available: 4 * GiB)
        #expect(policy.sampled(guest: state(target: 300 * MiB, first), host: host, now: .seconds(1)).isEmpty)
        let changes = policy.sampled(guest: state(target: 300 * MiB, second), host: host, now: .seconds(2))
        #expect(changes.count == 1)
        #expect(changes.first!.target < 300 * MiB - 100 * MiB)
    }

    @Test func refaultRateZeroIsNoSignal() {
        var tuning = AutoTuning()
        tuning.refaultsPerSecond = 0
        var policy = makePolicy(PolicySettings(mode: .auto, tuning: tuning))
        let host = HostSample(at: .seconds(2), total: 8 * GiB, available: 4 * GiB)
        let a = GuestSample(at: .seconds(1), memTotal: 700 * MiB, memAvailable: 300 * MiB, fileRefaults: 1_000)
        let b = GuestSample(at: .seconds(2), memTotal: 700 * MiB, memAvailable: 300 * MiB, fileRefaults: 11_000)
        _ = policy.sampled(guest: state(target: 300 * MiB, a), host: host, now: .seconds(1))
        #expect(policy.sampled(guest: state(target: 300 * MiB, b), host: host, now: .seconds(2)).isEmpty)
    }

    @Test func aStallInAnIntervalInWhichTheBalloonGrewOrUnderOnePercentGivesNothing() {
        let host = HostSample(at: .seconds(2), total: 8 * GiB, available: 4 * GiB)
        func sample(_ at: Int64, total: UInt64, balloon: UInt64) -> GuestSample {
            GuestSample(at: .seconds(at), memTotal: 700 * MiB, memAvailable: 300 * MiB, psiSomeAvg10: 0, psiSomeTotal: total,
                        balloonActual: balloon)
        }
        // 50 ms while the balloon grew by 100 MiB: the growth's own faulting.
        var policy = auto()
        _ = policy.sampled(guest: state(target: 300 * MiB, sample(1, total: 0, balloon: 200 * MiB)), host: host, now: .seconds(1))
        #expect(policy.sampled(guest: state(target: 300 * MiB, sample(2, total: 50_000, balloon: 300 * MiB)), host: host, now: .seconds(2)).isEmpty)
        // The stall goes on in the next interval, the balloon still: pressure.
        let changes = policy.sampled(guest: state(target: 300 * MiB, sample(3, total: 100_000, balloon: 300 * MiB)), host: host, now: .seconds(3))
        #expect(changes.count == 1)
        #expect(changes.first?.reason.contains("over the last 1.0 s") == true)
        // 5 ms in a second (0.5%) is below the share.
        var calm = auto()
        _ = calm.sampled(guest: state(target: 300 * MiB, sample(1, total: 0, balloon: 300 * MiB)), host: host, now: .seconds(1))
        #expect(calm.sampled(guest: state(target: 300 * MiB, sample(2, total: 5_000, balloon: 300 * MiB)), host: host, now: .seconds(2)).isEmpty)
    }

    @Test func steadyPressureThatNoLongerRisesAndEnoughMemoryGiveNothing() {
        var policy = auto()
        let host = HostSample(at: .seconds(2), total: 8 * GiB, available: 4 * GiB)
        let a = GuestSample(at: .seconds(1), memTotal: 700 * MiB, memAvailable: 300 * MiB, psiSomeAvg10: 3, fileRefaults: 10)
        let b = GuestSample(at: .seconds(2), memTotal: 700 * MiB, memAvailable: 300 * MiB, psiSomeAvg10: 2.9, fileRefaults: 20)
        _ = policy.sampled(guest: state(target: 300 * MiB, a), host: host, now: .seconds(1))
        #expect(policy.sampled(guest: state(target: 300 * MiB, b), host: host, now: .seconds(2)).isEmpty)
        // A counter going backwards (the guest rebooted) is no rate at all.
        let c = GuestSample(at: .seconds(3), memTotal: 700 * MiB, memAvailable: 300 * MiB, fileRefaults: 0)
        #expect(policy.sampled(guest: state(target: 300 * MiB, c), host: host, now: .seconds(3)).isEmpty)
    }

    @Test func noTargetOscillatesOver1000Rounds() {
        var rng = SeededRandom(seed: 7)
        // Demand with ±6 MiB of noise every second around a steady level.
        let noise = (0..<1_100).map { _ in Int64.random(in: -6...6, using: &rng) }
        let guests = (0..<3).map { i in
            SimGuest("g\(i)", shares: [500, 1000, 2000][i]) { t in
                UInt64(Int64(200 + 100 * i) * Int64(MiB) + noise[Int(t.components.seconds) % noise.count] * Int64(MiB))
            }
        }
        var sim = Simulation(guests, policy: auto(), budget: 4 * GiB)
        sim.run(seconds: 1_100)
        for i in 0..<3 {
            #expect(sim.reversals(i, after: 100) == 0, "guest \(i)")
        }
        #expect(sim.guests.allSatisfy { $0.oomKills == 0 })
    }

    @Test func theBudgetIsKept() {
        let guests = (0..<3).map { i in SimGuest("g\(i)") { _ in 300 * MiB } }
        var sim = Simulation(guests, policy: auto(), budget: 2 * GiB)
        sim.run(seconds: 300)
        // Starting 1.5 GiB over (3 GiB of guests in 2 GiB, 512 MiB reserve),
        // the host is above its reserve within a minute and stays there.
        #expect(sim.hostAvailable[60...].allSatisfy { $0 >= Int64(512 * MiB) })
        #expect(sim.guests.allSatisfy { $0.oomKills == 0 && $0.psiSome < 1 })
    }

    @Test func moreSharesLessTaken() {
        let sample = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 700 * MiB)
        var policy = auto(reserve: GiB, maxStep: GiB)
        let guests = [
            GuestState(name: "many", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB, shares: 2000),
                       connected: true, target: 0, actual: 0, sample: sample),
            GuestState(name: "few", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB, shares: 500),
                       connected: true, target: 0, actual: 0, sample: sample),
        ]
        // The host is 600 MiB short of its 1 GiB reserve.
        let host = HostSample(at: .seconds(1), total: 4 * GiB, available: 424 * MiB)
        let changes = policy.round(host: host, guests: guests, now: .seconds(1))
        let many = changes.first { $0.guest == "many" }?.target ?? 0
        let few = changes.first { $0.guest == "few" }?.target ?? 0
        #expect(few > many)
        #expect(many > 0)
        // Neither below its headroom while spare memory covers the need.
        #expect(few <= 700 * MiB - 102 * MiB)
    }

    @Test func aShortHostIsCoveredByShareOfSpareTimesWeight() {
        var tuning = AutoTuning()
        tuning.trimRate = 0
        tuning.maxStep = GiB
        var policy = AutoPolicy(reserve: GiB, tuning: tuning)
        let sample = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 700 * MiB)
        let guests = [UInt32(1000), 3000, 1000].enumerated().map { i, shares in
            GuestState(name: "g\(i)", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB, shares: shares),
                       connected: true, target: 0, actual: 0, sample: i == 2 ? GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 150 * MiB) : sample)
        }
        // 700 MiB short: g2 has 47.6 MiB of spare (not above the band, but
        // the need spreads over spare); weights 1, 1/3, 1: g0 fills up first.
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 324 * MiB)
        let changes = policy.round(host: host, guests: guests, now: .seconds(1))
        let taken = Dictionary(uniqueKeysWithValues: changes.map { ($0.guest, $0.target) })
        #expect(taken.values.reduce(0, +) == 700 * MiB)
        #expect(taken["g0"]! > taken["g1"]!)
        // No one below its headroom while spare memory covers the need.
        #expect(taken["g0"]! <= 700 * MiB - 102 * MiB)
        #expect(taken["g2"]! <= 48 * MiB)
    }

    @Test func aThinShareOfAShortfallIsRoundedUpToHalfTheBand() {
        var tuning = AutoTuning()
        tuning.trimRate = 0
        var policy = AutoPolicy(reserve: 512 * MiB, tuning: tuning)
        let sample = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 400 * MiB)
        // 5 MiB short: one move of 16 MiB (half the 32 MiB band), not 5.
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 507 * MiB)
        let changes = policy.round(host: host, guests: [state(target: 0, sample)], now: .seconds(1))
        #expect(changes.map(\.target) == [16 * MiB])
    }

    @Test func pressuredGuestsAreGivenFirst() {
        var policy = auto()
        let calm = GuestSample(at: .seconds(11), memTotal: 600 * MiB, memAvailable: 10 * MiB)
        let a = GuestState(name: "a", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB),
                           connected: true, target: 400 * MiB, actual: 400 * MiB, sample: calm)
        // b shows rising PSI at 10 s; its fast-path change is lost (the agent
        // had no link), and at 11 s it still has less than its headroom.
        let b0 = GuestSample(at: .seconds(9), memTotal: 600 * MiB, memAvailable: 90 * MiB, psiSomeAvg10: 0)
        let b1 = GuestSample(at: .seconds(10), memTotal: 600 * MiB, memAvailable: 90 * MiB, psiSomeAvg10: 3)
        let b2 = GuestSample(at: .seconds(11), memTotal: 600 * MiB, memAvailable: 90 * MiB, psiSomeAvg10: 3)
        var b = GuestState(name: "b", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB),
                           connected: true, target: 400 * MiB, actual: 400 * MiB, sample: b0)
        let host = HostSample(at: .seconds(11), total: 4 * GiB, available: 512 * MiB + 64 * MiB + 60 * MiB)
        _ = policy.sampled(guest: b, host: host, now: .seconds(9))
        b.sample = b1
        #expect(!policy.sampled(guest: b, host: host, now: .seconds(10)).isEmpty)
        b.sample = b2
        // 60 MiB of surplus: b gets it all although a's deficit is larger.
        let changes = policy.round(host: host, guests: [a, b], now: .seconds(11))
        #expect(changes.map(\.guest) == ["b"])
        #expect(changes.first!.target == 340 * MiB)
    }

    @Test func aSampleFromBeforeTheLastChangeMovesNothing() {
        var policy = auto()
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 6 * GiB)
        let sample = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 800 * MiB)
        var g = state(target: 0, sample)
        let first = policy.round(host: host, guests: [g], now: .seconds(1))
        #expect(first.count == 1)
        // The next round comes before the next sample: the old sample does
        // not show the first take yet, so nothing more is taken.
        g.target = first[0].target
        g.actual = first[0].target
        #expect(policy.round(host: host, guests: [g], now: .seconds(2)).isEmpty)
        // A sample taken after the change does.
        g.sample = GuestSample(at: .seconds(2), memTotal: GiB - g.target, memAvailable: 800 * MiB - g.target, balloonActual: g.target)
        #expect(policy.round(host: host, guests: [g], now: .seconds(2)).count == 1)
    }

    @Test func availableIsAsOfTheBalloonWhenSampled() {
        // The sample was taken with the balloon at 0; since then the balloon
        // reached 300 MiB (its event came before the next STATS): the guest
        // has 300 MiB less available than the sample says.
        var policy = auto()
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 6 * GiB)
        let sample = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 400 * MiB, balloonActual: 0)
        // 400 − 300 = 100 MiB available, below headroom: given, not taken.
        let changes = policy.round(host: host, guests: [state(target: 300 * MiB, sample)], now: .seconds(1))
        #expect(changes.count == 1)
        #expect(changes.first!.target < 300 * MiB)
    }

    /// A target the guest has not inflated to (its balloond holds back in its
    /// quiet period) is not pressure: nothing is given back until what the
    /// guest has now runs low.
    @Test func aTargetNotYetReachedIsNotPressure() {
        var policy = auto()
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 4 * GiB)
        let sample = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 300 * MiB, balloonActual: 0)
        var g = state(target: 600 * MiB, sample)
        g.actual = 0
        // Once at 600 MiB the guest would have -300 MiB; today it has 300.
        #expect(policy.sampled(guest: g, host: host, now: .seconds(1)).isEmpty)
        // What it has now runs low: that is pressure, and memory goes back.
        g.sample = GuestSample(at: .seconds(2), memTotal: GiB, memAvailable: 40 * MiB, balloonActual: 0)
        let changes = policy.sampled(guest: g, host: host, now: .seconds(2))
        #expect(changes.count == 1)
        #expect(changes.first!.target == 0)
    }

    /// A host shortfall squeezes a guest to the low-water mark plus half the
    /// band, not onto it: MemAvailable a few MiB lower at the next sample is
    /// not taken for pressure (it was, and the guest got everything back).
    @Test func aSqueezeStopsHalfABandAboveLowWater() {
        var tuning = AutoTuning()
        tuning.trimRate = 0
        tuning.maxStep = GiB
        var policy = AutoPolicy(reserve: GiB, tuning: tuning)
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 0)
        let sample = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 600 * MiB, balloonActual: 0)
        let changes = policy.round(host: host, guests: [state(target: 0, sample)], now: .seconds(1))
        // Headroom 102.4 MiB, low water 51.2, band 32: 600 − 67.2 taken.
        let target = changes.first!.target
        #expect(target == 600 * MiB - (51 * MiB + MiB / 5 + 16 * MiB))
        // The guest inflated; MemAvailable jitters 10 MiB under what was left.
        let after = GuestSample(at: .seconds(3), memTotal: GiB, memAvailable: 600 * MiB - target - 10 * MiB, balloonActual: target)
        #expect(policy.sampled(guest: state(target: target, after), host: host, now: .seconds(3)).isEmpty)
    }

    /// After pressure a guest is held off, but memory that is free once its
    /// workload ended is taken (its balloond regrows only into free memory);
    /// page cache, or a guest that does not say MemFree, is left alone.
    @Test func holdingOffTakesOnlyFreeMemory() throws {
        var policy = auto()
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 4 * GiB)
        var g = state(target: 300 * MiB, GuestSample(at: .seconds(1), memTotal: 700 * MiB, memAvailable: 20 * MiB, memFree: 10 * MiB))
        let fast = try #require(policy.sampled(guest: g, host: host, now: .seconds(1)).first, "pressure gives memory back")
        g.target = fast.target
        g.actual = fast.target
        // 2 s later the workload has ended: 800 MiB available, of which 100 MiB
        // free (the rest page cache): too little free above the boosted
        // headroom (153.6 MiB) and the band (32 MiB). Nothing is taken, nor
        // from a guest that does not say MemFree.
        g.sample = GuestSample(at: .seconds(3), memTotal: GiB, memAvailable: 800 * MiB, memFree: 100 * MiB, balloonActual: g.actual)
        #expect(policy.round(host: host, guests: [g], now: .seconds(3)).isEmpty)
        g.sample = GuestSample(at: .seconds(4), memTotal: GiB, memAvailable: 800 * MiB, balloonActual: g.actual)
        #expect(policy.round(host: host, guests: [g], now: .seconds(4)).isEmpty)
        // 700 MiB free, still within the hold-off: half of what is above
        // headroom + band (257 MiB), at most a step (128 MiB).
        g.sample = GuestSample(at: .seconds(5), memTotal: GiB, memAvailable: 800 * MiB, memFree: 700 * MiB, balloonActual: g.actual)
        let changes = policy.round(host: host, guests: [g], now: .seconds(5))
        #expect(changes.first?.target == fast.target + 128 * MiB)
    }

    @Test func memoryTheBalloonCouldGiveBackCountsAsAvailable() {
        var policy = auto()
        let sample = GuestSample(at: .seconds(1), memTotal: 700 * MiB, memAvailable: 30 * MiB, reclaimableHeld: 500 * MiB)
        let g = state(target: 300 * MiB, sample)
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 4 * GiB)
        #expect(policy.sampled(guest: g, host: host, now: .seconds(1)).isEmpty)
        let changes = policy.round(host: host, guests: [g], now: .seconds(1))
        #expect(changes.count == 1)
        #expect(changes.first!.target > 300 * MiB)
    }

    @Test func manualOffAndDisconnectedGuestsAreLeftAlone() {
        var policy = auto()
        let sample = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 900 * MiB)
        let guests = [
            GuestState(name: "manual", ramSize: GiB, limits: GuestLimits(min: 0, max: GiB, policy: .manual),
                       connected: true, target: 0, actual: 0, sample: sample),
            GuestState(name: "off", ramSize: GiB, limits: GuestLimits(min: 0, max: GiB, policy: .off),
                       connected: true, target: 0, actual: 0, sample: sample),
            GuestState(name: "gone", ramSize: GiB, limits: GuestLimits(min: 0, max: GiB),
                       connected: false, target: 0, actual: 0, sample: sample),
            GuestState(name: "new", ramSize: GiB, limits: GuestLimits(min: 0, max: GiB),
                       connected: true, target: 0, actual: 0, sample: nil),
        ]
        let host = HostSample(at: .seconds(1), total: 4 * GiB, available: 0)
        #expect(policy.round(host: host, guests: guests, now: .seconds(1)).isEmpty)
        let starving = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 0, psiSomeAvg10: 50)
        var manual = guests[0]
        manual.sample = starving
        manual.target = 512 * MiB
        #expect(policy.sampled(guest: manual, host: host, now: .seconds(1)).isEmpty)
    }

    @Test func aStaleSampleIsNotActedOn() {
        var policy = auto()
        let old = GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: 900 * MiB)
        let host = HostSample(at: .seconds(30), total: 4 * GiB, available: 4 * GiB)
        #expect(policy.round(host: host, guests: [state(target: 0, old)], now: .seconds(30)).isEmpty)
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import Testing

/// `[Policy] BurstYield=yes` (docs/policy.md, "Yielding to a burst"): while a
/// guest's balloon falls fast below its target, no other guest inflates.
@Suite struct AutoBurstTests {
    /// The host is 256 MiB short of its 512 MiB reserve: a round takes.
    let host = HostSample(at: .seconds(1), total: 4 * GiB, available: 256 * MiB)

    func policy(yield: Bool) -> AutoPolicy {
        var tuning = AutoTuning()
        tuning.burstYield = yield
        return AutoPolicy(reserve: 512 * MiB, tuning: tuning)
    }

    /// One round at `t` s: its changes by guest.
    func round(_ auto: inout AutoPolicy, _ states: [GuestState], at t: Int64, host: HostSample? = nil) -> [String: TargetChange] {
        let sample = host ?? self.host
        return Dictionary(uniqueKeysWithValues: auto.round(host: sample, guests: states, now: .seconds(t)).map { ($0.guest, $0) })
    }

    /// A guest with a sample taken at `at` that shows `available` as of its balloon now.
    func guest(_ name: String, target: UInt64, actual: UInt64, available: UInt64, at s: Int64) -> GuestState {
        GuestState(name: name, ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB), connected: true, target: target, actual: actual,
                   sample: GuestSample(at: .seconds(s), memTotal: GiB, memAvailable: available, memFree: available, balloonActual: actual))
    }

    /// `a` bursts between the rounds at 1 s and 2 s (its balloond deflates
    /// 500 → 300 MiB under a 500 MiB target) while `b`, idle with 600 MiB
    /// available, is inflating from 200 MiB. Returns each round's changes by guest.
    func burst(yield: Bool, aTarget: UInt64 = 500 * MiB, aAfter: UInt64 = 300 * MiB, host: HostSample? = nil) -> [[String: TargetChange]] {
        var auto = policy(yield: yield)
        var b = (target: 300 * MiB, actual: 200 * MiB)
        var rounds: [[String: TargetChange]] = []
        for (t, aActual) in [(Int64(1), 500 * MiB), (2, aAfter), (3, aAfter)] {
            let states = [
                guest("a", target: aTarget, actual: aActual, available: 150 * MiB, at: t),
                guest("b", target: b.target, actual: b.actual, available: 600 * MiB, at: t),
            ]
            let changes = round(&auto, states, at: t, host: host)
            if let change = changes["b"] { b.target = change.target }
            b.actual += 10 * MiB  // still inflating, slower than asked
            rounds.append(changes)
        }
        return rounds
    }

    @Test func aBurstStopsOtherGuestsInflatingUntilItsBalloonStopsFalling() throws {
        let rounds = burst(yield: true)
        let first = try #require(rounds[0]["b"], "before the burst the round takes from b")
        #expect(first.target > 300 * MiB)
        // During it: b stops where its balloon is (210 MiB), and a is not asked for anything.
        let held = try #require(rounds[1]["b"])
        #expect(held.target == 210 * MiB)
        #expect(held.reason.contains("a taking memory back at once"), "\(held.reason)")
        #expect(rounds[1]["a"] == nil)
        // The balloon stopped falling: b is taken from again.
        let after = try #require(rounds[2]["b"])
        #expect(after.target > 220 * MiB && after.reason.contains("take"), "\(after.reason)")
    }

    @Test func withoutTheKeyTheRoundTakesThroughTheBurst() throws {
        let rounds = burst(yield: false)
        for round in rounds {
            let change = try #require(round["b"])
            #expect(change.reason.contains("take"), "\(change.reason)")
        }
    }

    /// A guest that restarts comes back with an empty balloon under the same
    /// target: not a burst, since it was disconnected in between.
    @Test func aReconnectedGuestsEmptyBalloonIsNotABurst() throws {
        var auto = policy(yield: true)
        func states(_ t: Int64, aActual: UInt64, connected: Bool = true) -> [GuestState] {
            var a = guest("a", target: 500 * MiB, actual: aActual, available: 150 * MiB, at: t)
            a.connected = connected
            return [a, guest("b", target: 300 * MiB, actual: 200 * MiB, available: 600 * MiB, at: t)]
        }
        _ = round(&auto, states(1, aActual: 500 * MiB), at: 1)
        _ = round(&auto, states(2, aActual: 500 * MiB, connected: false), at: 2)
        let change = try #require(round(&auto, states(3, aActual: 0), at: 3)["b"])
        #expect(change.reason.contains("take"), "\(change.reason)")
    }

    /// Not a burst: a balloon that falls toward a lower target the policy
    /// set, or falls by less than a sixteenth of RAM.
    @Test func onlyAFastFallBelowTheTargetIsABurst() throws {
        let towardTarget = burst(yield: true, aTarget: 300 * MiB)
        let slow = burst(yield: true, aAfter: 460 * MiB)
        for rounds in [towardTarget, slow] {
            let change = try #require(rounds[1]["b"])
            #expect(change.reason.contains("take"), "\(change.reason)")
        }
    }

    /// The machine itself short (below half its reserve, or its PSI memory
    /// `full` showing stalls): the round takes through the burst, and not
    /// from the bursting guest. A budget as short is an account: it yields.
    @Test func aMachineThatIsShortItselfDoesNotYield() throws {
        let below = HostSample(at: .seconds(1), total: 4 * GiB, available: 128 * MiB)
        let stalling = HostSample(at: .seconds(1), total: 4 * GiB, available: 300 * MiB, psiFullAvg10: 2.5)
        for (host, why) in [(below, "below half its reserve"), (stalling, "psi full 2.5%")] {
            let during = burst(yield: true, host: host)[1]
            let change = try #require(during["b"])
            #expect(change.reason.contains("take") && change.reason.contains("no yield to a") && change.reason.contains(why), "\(change.reason)")
            #expect(during["a"] == nil)
        }
        let budget = HostSample.budget(2 * GiB, used: 2 * GiB + 128 * MiB, at: .seconds(1))
        let held = try #require(burst(yield: true, host: budget)[1]["b"])
        #expect(held.reason.contains("a taking memory back at once"), "\(held.reason)")
    }

    /// `BurstLinger=3s`: a burst deflated in steps (500 → 300 MiB at 2 s, a
    /// pause at 3 s, 200 MiB at 4 s, then still) holds b through the pause
    /// and until 3 s after the last fall; with 0 the pause's round takes.
    @Test(arguments: [Duration.zero, .seconds(3)]) func aBurstInStepsHoldsThroughItsPauses(linger: Duration) throws {
        var tuning = AutoTuning()
        tuning.burstLinger = linger
        var auto = AutoPolicy(reserve: 512 * MiB, tuning: tuning)
        let b = 200 * MiB
        var held: [Int64: Bool] = [:]
        for (t, aActual) in [(Int64(1), 500 * MiB), (2, 300 * MiB), (3, 300 * MiB), (4, 200 * MiB), (5, 200 * MiB), (6, 200 * MiB), (7, 200 * MiB), (8, 200 * MiB)] {
            let states = [
                guest("a", target: 500 * MiB, actual: aActual, available: 150 * MiB, at: t),
                guest("b", target: b + 100 * MiB, actual: b, available: 600 * MiB, at: t),
            ]
            let change = try #require(round(&auto, states, at: t)["b"], "b moves at \(t) s")
            held[t] = change.reason.contains("a taking memory back at once")
            #expect(held[t]! || change.target > b + 100 * MiB, "\(change.reason)")
        }
        #expect(held[2] == true && held[4] == true)
        #expect(held[3] == (linger > .zero), "the pause between two steps")
        #expect(held[5] == (linger > .zero) && held[6] == (linger > .zero))
        #expect(held[7] == false && held[8] == false, "3 s after the last fall the round takes again")
    }

    /// A lingering burst ends once the guest's balloon is within a band of
    /// its target (the policy lowered it, or the guest reached it).
    @Test func theLingerEndsAtTheTarget() throws {
        var tuning = AutoTuning()
        tuning.burstLinger = .seconds(10)
        var auto = AutoPolicy(reserve: 512 * MiB, tuning: tuning)
        _ = round(&auto, [guest("a", target: 500 * MiB, actual: 500 * MiB, available: 150 * MiB, at: 1),
                          guest("b", target: 300 * MiB, actual: 200 * MiB, available: 600 * MiB, at: 1)], at: 1)
        let during = round(&auto, [guest("a", target: 500 * MiB, actual: 300 * MiB, available: 150 * MiB, at: 2),
                                   guest("b", target: 300 * MiB, actual: 200 * MiB, available: 600 * MiB, at: 2)], at: 2)
        #expect(during["b"]?.reason.contains("a taking memory back at once") == true)
        let after = round(&auto, [guest("a", target: 310 * MiB, actual: 300 * MiB, available: 150 * MiB, at: 3),
                                  guest("b", target: 200 * MiB, actual: 200 * MiB, available: 600 * MiB, at: 3)], at: 3)
        let change = try #require(after["b"])
        #expect(change.reason.contains("take"), "\(change.reason)")
    }

    /// A guest whose own balloond holds its balloon short of the target (its
    /// quiet period after pressure) is not inflating: a burst leaves its
    /// target alone, where lowering it to the balloon would be raised again
    /// by the next round that takes (a target reversal). Once its balloon
    /// grows, the burst holds it as any other.
    @Test func aBalloonItsGuestHoldsIsNotHeldUntilItGrows() throws {
        var auto = policy(yield: true)
        func states(_ t: Int64, aActual: UInt64, bActual: UInt64, bHeld: Bool = true) -> [GuestState] {
            var b = guest("b", target: 400 * MiB, actual: bActual, available: 600 * MiB, at: t)
            b.heldByGuest = bHeld
            return [guest("a", target: 500 * MiB, actual: aActual, available: 150 * MiB, at: t), b]
        }
        _ = round(&auto, states(1, aActual: 500 * MiB, bActual: 200 * MiB), at: 1)
        // a bursts; b's balloon stands still at 200 MiB, held by its guest: no change.
        #expect(round(&auto, states(2, aActual: 300 * MiB, bActual: 200 * MiB), at: 2)["b"] == nil)
        // Still bursting, and b grew since the last round: held where it is.
        let held = try #require(round(&auto, states(3, aActual: 200 * MiB, bActual: 230 * MiB), at: 3)["b"])
        #expect(held.target == 230 * MiB && held.reason.contains("a taking memory back at once"), "\(held.reason)")
        // The same standing balloon not held by its guest is held (it may be about to inflate).
        var fresh = policy(yield: true)
        _ = round(&fresh, states(1, aActual: 500 * MiB, bActual: 200 * MiB, bHeld: false), at: 1)
        let stopped = try #require(round(&fresh, states(2, aActual: 300 * MiB, bActual: 200 * MiB, bHeld: false), at: 2)["b"])
        #expect(stopped.target == 200 * MiB, "\(stopped.reason)")
    }

    /// `BurstHoldGrowth=yes`: `b`, held at 200 MiB by its own balloond, is
    /// left alone when `a` bursts (its DEFLATED, or the round that sees the
    /// fall), but held the moment its balloon grows, until a round no longer
    /// finds `a` bursting. Off (the default), growth waits for the round.
    @Test(arguments: [false, true]) func aGuestHeldBalloonThatGrowsDuringABurstIsHeldAtOnce(knob: Bool) throws {
        var tuning = AutoTuning()
        tuning.burstHoldGrowth = knob
        func states(_ t: Int64, aActual: UInt64, bActual: UInt64 = 200 * MiB) -> [GuestState] {
            var b = guest("b", target: 400 * MiB, actual: bActual, available: 600 * MiB, at: t)
            b.heldByGuest = true
            return [guest("a", target: 500 * MiB, actual: aActual, available: 150 * MiB, at: t), b]
        }
        func grow(_ auto: inout AutoPolicy, at ms: Int64) -> [TargetChange] {
            auto.grew(guest: states(2, aActual: 300 * MiB, bActual: 230 * MiB)[1], host: host, now: .milliseconds(ms))
        }
        var auto = AutoPolicy(reserve: 512 * MiB, tuning: tuning)
        _ = round(&auto, states(1, aActual: 500 * MiB), at: 1)
        #expect(grow(&auto, at: 1200).isEmpty, "no burst yet")
        let now = states(2, aActual: 300 * MiB)
        #expect(auto.deflated(guest: now[0], guests: now, host: host, now: .milliseconds(1400)).isEmpty, "b stands still")
        let held = grow(&auto, at: 1600)
        #expect(held.count == (knob ? 1 : 0))
        if knob {
            #expect(held[0].guest == "b" && held[0].target == 230 * MiB, "\(held)")
            #expect(held[0].reason.contains("a taking memory back at once (b's balloon grew): stop inflating at 230 MiB"), "\(held[0].reason)")
        }
        // A round that finds a bursting (its balloon fell since the last), with no DEFLATED, counts too ...
        var viaRound = AutoPolicy(reserve: 512 * MiB, tuning: tuning)
        _ = round(&viaRound, states(1, aActual: 500 * MiB), at: 1)
        #expect(round(&viaRound, states(2, aActual: 300 * MiB), at: 2)["b"] == nil)
        #expect(grow(&viaRound, at: 2300).count == (knob ? 1 : 0))
        // ... and one that does not ends it.
        _ = round(&viaRound, states(3, aActual: 300 * MiB), at: 3)
        #expect(grow(&viaRound, at: 3300).isEmpty)
    }

    /// The event path: `a`'s balloond gives back under pressure between two
    /// rounds (its DEFLATED). `b`, inflating, stops where it is at once, not
    /// at the next round; `c`, giving back itself, and `d`, held flat by its
    /// own balloond, are left alone, and `a` is asked for nothing.
    @Test func aDeflateHoldsTheOthersAtOnce() throws {
        func states(aActual: UInt64, at t: Int64) -> [GuestState] {
            var d = guest("d", target: 400 * MiB, actual: 150 * MiB, available: 600 * MiB, at: t)
            d.heldByGuest = true
            return [guest("a", target: 500 * MiB, actual: aActual, available: 150 * MiB, at: t),
                    guest("b", target: 400 * MiB, actual: t == 1 ? 200 * MiB : 230 * MiB, available: 600 * MiB, at: t),
                    guest("c", target: 400 * MiB, actual: t == 1 ? 300 * MiB : 250 * MiB, available: 600 * MiB, at: t), d]
        }
        func deflate(_ auto: inout AutoPolicy, aActual: UInt64, host: HostSample? = nil) -> [String: TargetChange] {
            let now = states(aActual: aActual, at: 2)
            return Dictionary(uniqueKeysWithValues: auto.deflated(guest: now[0], guests: now, host: host ?? self.host, now: .milliseconds(1400))
                .map { ($0.guest, $0) })
        }
        var auto = policy(yield: true)
        // Before any round there is no fall to measure.
        #expect(deflate(&auto, aActual: 300 * MiB).isEmpty)
        _ = round(&auto, states(aActual: 500 * MiB, at: 1), at: 1)
        var copy = auto
        let changes = deflate(&copy, aActual: 300 * MiB)
        let held = try #require(changes["b"])
        #expect(held.target == 230 * MiB && held.reason.contains("a taking memory back at once (its DEFLATED)"), "\(held.reason)")
        #expect(Set(changes.keys) == ["b"])
        // A step smaller than a burst's (1/16 of the RAM), a machine short
        // itself, or the key off: no hold between rounds.
        copy = auto
        #expect(deflate(&copy, aActual: 470 * MiB).isEmpty)
        copy = auto
        #expect(deflate(&copy, aActual: 300 * MiB, host: HostSample(at: .seconds(1), total: 4 * GiB, available: 128 * MiB)).isEmpty)
        var off = policy(yield: false)
        _ = round(&off, states(aActual: 500 * MiB, at: 1), at: 1)
        #expect(deflate(&off, aActual: 300 * MiB).isEmpty)
    }

    /// The event path counts a guest-held balloon as growing if it grew at
    /// the last round, not only since: `b`, regrowing after its quiet
    /// period (200 → 230 MiB by the round at 2 s), is locking its next chunk
    /// when `a`'s DEFLATED comes, so its balloon shows no growth since.
    @Test func aGuestHeldBalloonThatGrewAtTheLastRoundIsHeldOnADeflate() throws {
        func states(_ t: Int64, aActual: UInt64, bActual: UInt64) -> [GuestState] {
            var b = guest("b", target: 400 * MiB, actual: bActual, available: 600 * MiB, at: t)
            b.heldByGuest = true
            return [guest("a", target: 500 * MiB, actual: aActual, available: 150 * MiB, at: t), b]
        }
        var auto = policy(yield: true)
        _ = round(&auto, states(1, aActual: 500 * MiB, bActual: 200 * MiB), at: 1)
        _ = round(&auto, states(2, aActual: 500 * MiB, bActual: 230 * MiB), at: 2)
        let now = states(2, aActual: 300 * MiB, bActual: 230 * MiB)
        let held = auto.deflated(guest: now[0], guests: now, host: host, now: .milliseconds(2400))
        #expect(held.map(\.guest) == ["b"])
        #expect(held.first?.target == 230 * MiB, "\(held)")
        #expect(held.first?.reason.contains("a taking memory back at once (its DEFLATED)") == true, "\(held)")
        // Standing still at the last round and since: left alone, as before.
        var still = policy(yield: true)
        _ = round(&still, states(1, aActual: 500 * MiB, bActual: 230 * MiB), at: 1)
        _ = round(&still, states(2, aActual: 500 * MiB, bActual: 230 * MiB), at: 2)
        #expect(still.deflated(guest: now[0], guests: now, host: host, now: .milliseconds(2400)).isEmpty)
    }
}

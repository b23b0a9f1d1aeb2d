// SPDX-License-Identifier: Apache-2.0

// `[Policy] BurstYield=` (on by default): while one guest takes memory back at once (an
// instant burst), the round inflates no other guest (docs/policy.md,
// "Yielding to a burst").
//
// Why: on a host whose cores are busy, inflating a neighbour during a burst
// spends the CPU the burst runs on: the neighbour's guest zeroes and locks
// every page it inflates, and the host punches them. In `make bench-host` the
// slowest burst ran beside an idle neighbour inflating 57-127 MiB, which cost
// that neighbour's QEMU 0.38-0.48 s of CPU against 0.03 s with no balloon.
// The host gets that memory a few rounds later instead. Not when the machine
// itself is short (`machineShort`): then the round takes as it would.

extension AutoPolicy {
    /// The guests whose balloon fell by `burstFall` of their RAM or more since
    /// the previous round and now sits at least a band below its target: the
    /// guest's own balloond deflated under pressure (a target the policy
    /// lowered leaves the balloon at or above it). The bursting guest's stats
    /// often stop meanwhile (its vCPU is busy), so this reads the balloon's
    /// size, which its deflate messages keep current, not its samples. A
    /// guest not managed in a round (disconnected: a restarted guest comes
    /// back with an empty balloon) starts afresh at its next.
    ///
    /// `BurstLinger=`: a guest found so stays bursting for that long after
    /// the last round its balloon fell (by any amount), while the balloon
    /// stays a band below its target. A TCG guest's balloond deflates a
    /// burst in steps a second or two apart; without it the round between
    /// two steps took again and the next held again (145 → 273 → 145 MiB
    /// every second in bench-host on df91838), and a neighbour inflated
    /// during the burst.
    mutating func takingBackAtOnce(_ states: [GuestState], now: Duration) -> [String] {
        var out: [String] = []
        for state in states {
            var memory = guests[state.name] ?? AutoGuest()
            defer { guests[state.name] = memory }
            let before = memory.roundActual
            memory.roundActual = state.managed ? state.actual : nil
            memory.grewSinceRound = before.map { state.actual > $0 } ?? false
            guard state.managed, state.target.signed - state.actual.signed >= band(state) else {
                memory.burstUntil = nil
                continue
            }
            let fell = before.map { $0 > state.actual ? Double($0 - state.actual) : 0 } ?? 0
            let lingering = memory.burstUntil.map { now < $0 } ?? false
            // A fall of any size while lingering is the same burst going on.
            if fell >= Double(state.ramSize) * tuning.burstFall || (lingering && fell > 0) {
                memory.burstUntil = now + tuning.burstLinger
                out.append(state.name)
            } else if lingering {
                out.append(state.name)
            }
        }
        return out.sorted()
    }

    /// Instead of taking: every other guest still inflating toward its target
    /// stops where its balloon is (more than half a band short of the target;
    /// less is not worth a message). Giving back is not held.
    ///
    /// Not a guest whose own balloond holds its balloon short of the target
    /// (its quiet period after pressure, its floor) while the balloon has not
    /// grown (`grew`: since the last round): it is not inflating, so lowering
    /// its target to where the balloon stands stops nothing, and the first
    /// round that takes again raises it back. In `make bench-host` on 4dec2e0
    /// such holds were 27-29 of every run's 49-58 target reversals. If the
    /// guest starts growing (its quiet period ends), the next hold stops it.
    /// `seen`: how the burst was seen, for the reason (the event path's).
    func hold(_ states: [GuestState], yieldingTo bursting: [String], seen: String = "", grew: (GuestState) -> Bool,
              into changes: inout [String: (Int64, String)]) {
        let who = bursting.joined(separator: ", ")
        for state in states where changes[state.name] == nil && !bursting.contains(state.name) {
            guard state.target.signed - state.actual.signed > band(state) / 2 else { continue }
            if state.heldByGuest, !grew(state) { continue }
            changes[state.name] = (
                state.actual.signed - state.target.signed,
                "\(who) taking memory back at once\(seen): stop inflating at \(mib(state.actual.signed))"
            )
        }
    }

    /// The yield's event path: `guest`'s balloond just gave memory back under
    /// pressure. If its balloon has fallen a burst's worth since the last
    /// round (or by any amount while its `BurstLinger=` lasts) and sits a band
    /// below its target, the other guests stop inflating now: the round that
    /// would see the fall comes up to `Interval=` later, and in `make
    /// bench-host` on cacfd8a a neighbour whose own balloond was regrowing
    /// went on inflating for 1-1.5 s of a burst. Only holds (the next round
    /// decides the rest, and still sees the fall); none for a guest whose
    /// balloon fell since the last round (it is giving back, not inflating).
    /// A guest its own balloond holds short of the target counts as growing
    /// if its balloon grew at the last round or since, as the round's own
    /// hold counts it: one locking its next chunk shows no growth since the
    /// round (in `make bench-host` on 588b4ca g0, regrowing after its quiet
    /// period, went 196 → 312 MiB in the first 1.5 s of g1/5, and only the
    /// round after held it).
    public mutating func deflated(guest state: GuestState, guests states: [GuestState], host: HostSample, now: Duration) -> [TargetChange] {
        guard tuning.burstYield, state.managed, machineShort(host) == nil,
              let memory = guests[state.name], let before = memory.roundActual, before > state.actual,
              state.target.signed - state.actual.signed >= band(state)
        else { return [] }
        let lingering = memory.burstUntil.map { now < $0 } ?? false
        guard lingering || Double(before - state.actual) >= Double(state.ramSize) * tuning.burstFall else { return [] }
        bursting.insert(state.name)
        let others = states.filter { other in
            other.managed && other.name != state.name && guests[other.name]?.roundActual.map { other.actual >= $0 } ?? true
        }
        var changes: [String: (Int64, String)] = [:]
        hold(others, yieldingTo: [state.name], seen: " (its DEFLATED)", grew: { other in
            guard let memory = guests[other.name] else { return false }
            return memory.grewSinceRound || memory.roundActual.map { other.actual > $0 } ?? false
        }, into: &changes)
        return others.compactMap { other in changes[other.name].flatMap { change(other, by: $0.0, $0.1, now: now) } }
    }

    /// `BurstHoldGrowth=`: `guest`'s balloon just grew while another guest
    /// is taking memory back at once (as the last round or a `DEFLATED` since
    /// found it): it stops where it is now. The holds leave alone a balloon
    /// its own balloond holds short of the target until it grows, and a round
    /// sees the growth up to `Interval=` later: in `make bench-host` on
    /// 7d15af8 g0, held at 198 MiB by its quiet period under a 461 MiB
    /// target, grew to 360 MiB in the first 1.6 s of g1's burst.
    public mutating func grew(guest state: GuestState, host: HostSample, now: Duration) -> [TargetChange] {
        guard tuning.burstHoldGrowth, tuning.burstYield, state.managed, !bursting.isEmpty, !bursting.contains(state.name),
              machineShort(host) == nil
        else { return [] }
        var changes: [String: (Int64, String)] = [:]
        hold([state], yieldingTo: bursting.sorted(), seen: " (\(state.name)'s balloon grew)", grew: { _ in true }, into: &changes)
        return changes[state.name].flatMap { change(state, by: $0.0, $0.1, now: now) }.map { [$0] } ?? []
    }

    /// Why the machine itself cannot wait for a burst to end, or nil: its
    /// available memory is below half the reserve, or its PSI memory `full`
    /// is at `psiFullThreshold` (tasks on the host stall on memory). A yield
    /// defers taking by the seconds a burst lasts, which a `HostMemory=`
    /// budget can afford (its shortfall is an account, not a stall), but a
    /// host on its way to its own OOM killer cannot.
    func machineShort(_ host: HostSample) -> String? {
        guard !host.isBudget else { return nil }
        if host.available < reserve / 2 {
            return "host available \(mib(host.available.signed)) below half its reserve"
        }
        if let full = host.psiFullAvg10, full >= tuning.psiFullThreshold {
            return "host memory stalls (psi full \(tenths(full))%)"
        }
        return nil
    }
}

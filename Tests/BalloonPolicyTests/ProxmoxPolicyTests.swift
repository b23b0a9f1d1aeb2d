// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import Testing

/// pvestatd's auto-ballooning worked by hand from PVE/AutoBalloon.pm's
/// compute_alg1 (docs/policy.md): guest memory = RAM − balloon target.
@Suite struct ProxmoxPolicyTests {
    func vm(_ name: String, memory: UInt64, freemem: UInt64, shares: UInt32 = 1000) -> GuestState {
        let actual = 4 * GiB - memory
        return GuestState(
            name: name, ramSize: 4 * GiB, limits: GuestLimits(min: GiB, max: 4 * GiB, shares: shares), connected: true,
            target: actual, actual: actual,
            sample: GuestSample(at: .seconds(10), memTotal: memory, memAvailable: freemem, memFree: freemem))
    }

    /// A host whose goal (80% of total − used) is `goal`.
    func host(goal: Int64) -> HostSample {
        let total: Int64 = 10 * Int64(GiB)
        // goal = 0.8 total − (total − available)  ⇒  available = goal + 0.2 total
        return HostSample(at: .seconds(10), total: UInt64(total), available: UInt64(goal + total / 5))
    }

    @Test func theGoalIsEightyPercentOfTheHostMinusWhatIsUsed() {
        let policy = ProxmoxPolicy()
        #expect(policy.goal(HostSample(at: .zero, total: 10 * GiB, available: 3 * GiB)) == Int64(8 * GiB) - Int64(7 * GiB))
        #expect(ProxmoxPolicy(fill: 0.5).goal(HostSample(at: .zero, total: 10 * GiB, available: 3 * GiB)) < 0)
    }

    @Test func withinTenMiBNothingMoves() {
        var policy = makePolicy(PolicySettings(mode: .proxmox))
        let guests = [vm("a", memory: 2 * GiB, freemem: 0), vm("b", memory: 4 * GiB, freemem: 3 * GiB)]
        #expect(policy.round(host: host(goal: 10 * Int64(MiB)), guests: guests, now: .seconds(10)).isEmpty)
        #expect(policy.round(host: host(goal: -10 * Int64(MiB)), guests: guests, now: .seconds(10)).isEmpty)
    }

    @Test func shrinkSpreadsByShareAtMost100MiBEach() {
        // goal −300 MiB, two VMs at 4 GiB with free memory: desired is
        // 1 GiB + (6 GiB − 300 MiB)/2 = 4 GiB − 150 MiB each, but a VM moves
        // at most 100 MiB a round: both to 4 GiB − 100 MiB, 100 MiB unmet.
        var policy = makePolicy(PolicySettings(mode: .proxmox))
        let guests = [vm("a", memory: 4 * GiB, freemem: 3 * GiB), vm("b", memory: 4 * GiB, freemem: 3 * GiB)]
        let changes = policy.round(host: host(goal: -300 * Int64(MiB)), guests: guests, now: .seconds(10))
        #expect(changes.map(\.guest) == ["a", "b"])
        #expect(changes.map(\.target) == [100 * MiB, 100 * MiB])
    }

    @Test func shrinkByShares() {
        // goal −200 MiB, shares 3000 : 1000, both at 4 GiB: alloc_new =
        // 6 GiB − 200 MiB; desired a = 1 GiB + ¾ of it = 4 GiB + 384 MiB − 150 MiB
        // (above maxmem: 4 GiB, no move); b = 1 GiB + ¼ = 2.5 GiB − 50 MiB → −100 MiB.
        // The second pass (b only) spreads the rest: b again −100 MiB from where it
        // started, nothing more.
        var policy = makePolicy(PolicySettings(mode: .proxmox))
        let guests = [vm("a", memory: 4 * GiB, freemem: 3 * GiB, shares: 3000),
                      vm("b", memory: 4 * GiB, freemem: 3 * GiB, shares: 1000)]
        let changes = policy.round(host: host(goal: -200 * Int64(MiB)), guests: guests, now: .seconds(10))
        #expect(changes.map(\.guest) == ["b"])
        #expect(changes.map(\.target) == [100 * MiB])
    }

    @Test func growGoesToPressuredVMsFirst() {
        // goal +500 MiB; a is pressured (free ≤ 25% of min), b is not. Pass
        // one over [a]: desired 1 GiB + (1 GiB + 500 MiB) = 2.5 GiB; a grows
        // 100 MiB; the pass made progress, so b is not considered.
        var policy = makePolicy(PolicySettings(mode: .proxmox))
        let guests = [vm("a", memory: 2 * GiB, freemem: 100 * MiB), vm("b", memory: 2 * GiB, freemem: 900 * MiB)]
        let changes = policy.round(host: host(goal: 500 * Int64(MiB)), guests: guests, now: .seconds(10))
        #expect(changes.map(\.guest) == ["a"])
        #expect(changes.map(\.target) == [2 * GiB - 100 * MiB])
    }

    @Test func growReachesEveryoneWhenNoPressuredVMCanGrow() {
        // a is pressured but already at its maximum: no progress, so all VMs:
        // alloc_new = 3 GiB + 1 GiB + 500 MiB, desired 1 GiB + half of it =
        // 3.25 GiB each; b grows 100 MiB and — as compute_alg1 does, shrinking
        // whoever is above its share even in a grow request — a gives 100 MiB.
        var policy = makePolicy(PolicySettings(mode: .proxmox))
        let guests = [vm("a", memory: 4 * GiB, freemem: 100 * MiB), vm("b", memory: 2 * GiB, freemem: 900 * MiB)]
        let changes = policy.round(host: host(goal: 500 * Int64(MiB)), guests: guests, now: .seconds(10))
        #expect(changes.map(\.guest) == ["a", "b"])
        #expect(changes.map(\.target) == [100 * MiB, 2 * GiB - 100 * MiB])
    }

    @Test func inSimulationEveryStepIsAtMost100MiBAndMinHolds() {
        let guests = (0..<3).map { i in SimGuest("g\(i)", min: 384 * MiB) { _ in UInt64(100 + 150 * i) * MiB } }
        var sim = Simulation(guests, policy: makePolicy(PolicySettings(mode: .proxmox)), budget: 2 * GiB)
        var last = sim.guests.map(\.target)
        for _ in 0..<60 {
            sim.run(seconds: 10)
            for (i, g) in sim.guests.enumerated() {
                let moved = g.target > last[i] ? g.target - last[i] : last[i] - g.target
                #expect(moved <= 100 * MiB)
                #expect(g.ramSize - g.target >= 384 * MiB)
            }
            last = sim.guests.map(\.target)
        }
        // It fills the host to 80%: 20% of 2 GiB free, within the dead band + a step.
        #expect(abs(sim.hostAvailable.last! - Int64(2 * GiB) / 5) <= Int64(110 * MiB))
        #expect(sim.changes.allSatisfy { !$0.fast })
    }
}

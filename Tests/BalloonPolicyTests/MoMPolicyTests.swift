// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import Testing

/// oVirt MoM's balloon.rules worked by hand (docs/policy.md): guest memory
/// (`balloon_cur`) = RAM − balloon target, `mem_unused` = MemFree.
@Suite struct MoMPolicyTests {
    func guest(memory: UInt64, unused: UInt64, at: Duration = .seconds(10)) -> GuestState {
        let actual = 2 * GiB - memory
        return GuestState(
            name: "g", ramSize: 2 * GiB, limits: GuestLimits(min: 0, max: 2 * GiB), connected: true,
            target: actual, actual: actual,
            sample: GuestSample(at: at, memTotal: memory, memAvailable: unused, memFree: unused))
    }

    func host(freePercent: Double, at: Duration = .seconds(10)) -> HostSample {
        HostSample(at: at, total: 10 * GiB, available: UInt64(Double(10 * GiB) * freePercent))
    }

    func run(_ g: GuestState, _ h: HostSample) -> [TargetChange] {
        var policy = makePolicy(PolicySettings(mode: .mom))
        _ = policy.sampled(guest: g, host: h, now: h.at)
        return policy.round(host: h, guests: [g], now: h.at)
    }

    @Test func underPressureAGuestShrinksFivePercent() {
        // Host free 15%: guest_free_percent = 0.20 × 0.15/0.20 = 0.15;
        // used = 2 GiB − 1 GiB, floor = 1 GiB + 0.15 × 2 GiB = 1.3 GiB;
        // 5% step: 0.95 × 2 GiB = 1.9 GiB, above the floor.
        let changes = run(guest(memory: 2 * GiB, unused: GiB), host(freePercent: 0.15))
        #expect(changes.map(\.target) == [2 * GiB - UInt64((Double(2 * GiB) * 0.95).rounded(.down))])
    }

    @Test func theShrinkStopsAtUsedPlusScaledFreeMemory() {
        // used = 2 GiB − 400 MiB; floor = used + 0.15 × 2 GiB = 1.9 GiB + 7.2 MiB > 1.9 GiB.
        let changes = run(guest(memory: 2 * GiB, unused: 400 * MiB), host(freePercent: 0.15))
        let floor = Double(2 * GiB - 400 * MiB) + 0.15 * Double(2 * GiB)
        #expect(changes.map(\.target) == [2 * GiB - UInt64(floor.rounded(.down))])
    }

    @Test func aGuestWithoutFreeMemoryIsNotShrunk() {
        // used + 15% is more than the guest has: the rules leave it.
        #expect(run(guest(memory: 2 * GiB, unused: 100 * MiB), host(freePercent: 0.15)).isEmpty)
    }

    @Test func atCriticalPressureGuestsAreForcedBelowTheirUsedMemory() {
        // Host free 4% ≤ 5%: guest_free_percent = −0.05 + 0.04 = −0.01;
        // used 1.95 GiB: floor = 1.95 GiB − 0.01 × 2 GiB < 0.95 × 2 GiB? No:
        // 1.93 GiB > 1.9 GiB, so the floor is the new size.
        let g = guest(memory: 2 * GiB, unused: UInt64(0.05 * Double(GiB)))
        let changes = run(g, host(freePercent: 0.04))
        let used = Double(2 * GiB) - Double(UInt64(0.05 * Double(GiB)))
        let floor = used + (-0.05 + Double(UInt64(Double(10 * GiB) * 0.04)) / Double(10 * GiB)) * Double(2 * GiB)
        #expect(changes.map(\.target) == [2 * GiB - UInt64(floor.rounded(.down))])
    }

    @Test func withoutPressureABalloonedGuestGrowsFivePercent() {
        // cur 1 GiB, used 1 GiB − 600 MiB: floor = 424 MiB + 0.2 × 2 GiB < 1.05 GiB.
        let changes = run(guest(memory: GiB, unused: 600 * MiB), host(freePercent: 0.5))
        #expect(changes.map(\.target) == [2 * GiB - UInt64((Double(GiB) * 1.05).rounded(.down))])
    }

    @Test func growthReachesUsedPlusTwentyPercentOfMaxAtOnce() {
        // cur 1 GiB with 10 MiB unused: floor = 1014 MiB + 409.6 MiB > 1.05 GiB.
        let changes = run(guest(memory: GiB, unused: 10 * MiB), host(freePercent: 0.5))
        let floor = Double(GiB - 10 * MiB) + 0.2 * Double(2 * GiB)
        #expect(changes.map(\.target) == [2 * GiB - UInt64(floor.rounded(.down))])
    }

    @Test func changesSmallerThanAQuarterPercentAreSkipped() {
        // 1 MiB below max: growing to max is 1 MiB < 0.25% of 2 GiB.
        #expect(run(guest(memory: 2 * GiB - MiB, unused: GiB), host(freePercent: 0.5)).isEmpty)
        #expect(run(guest(memory: 2 * GiB, unused: GiB), host(freePercent: 0.5)).isEmpty)
    }

    @Test func decisionsUseTheAverageOfTheLastTenSamples() {
        var policy = makePolicy(PolicySettings(mode: .mom))
        // Nine samples 5 s apart with 15% free, then one with 50%: the mean
        // (18.5%) is still below 20%, so the guest shrinks.
        for i in 1...9 {
            _ = policy.sampled(guest: guest(memory: 2 * GiB, unused: GiB, at: .seconds(5 * i)),
                               host: host(freePercent: 0.15, at: .seconds(5 * i)), now: .seconds(5 * i))
        }
        let h = host(freePercent: 0.5, at: .seconds(50))
        let changes = policy.round(host: h, guests: [guest(memory: 2 * GiB, unused: GiB, at: .seconds(50))], now: .seconds(50))
        #expect(changes.count == 1)
        #expect(changes.first!.target > 0)
        #expect(changes.first!.reason.contains("shrink"))
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import Testing

@Suite struct ManualPolicyTests {
    @Test func manualNeverSetsATarget() {
        var policy = makePolicy(PolicySettings(mode: .manual))
        let guest = GuestState(
            name: "a", ramSize: 1 << 30, limits: GuestLimits(min: 256 << 20, max: 1 << 30), connected: true,
            target: 0, actual: 0, sample: GuestSample(at: .seconds(1), memTotal: 1 << 30, memAvailable: 900 << 20))
        let host = HostSample(at: .seconds(1), total: 4 << 30, available: 64 << 20)
        #expect(policy.mode == .manual)
        #expect(policy.round(host: host, guests: [guest], now: .seconds(1)).isEmpty)
        #expect(policy.sampled(guest: guest, host: host, now: .seconds(1)).isEmpty)
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import Testing

/// `auto` and the guest's own MemAvailable floor (docs/policy.md, "The
/// guest's floor"): a round takes nothing past floor + guestFloorMargin, so a
/// host shortfall goes to the guests that can give it.
@Suite struct AutoFloorTests {
    func policy() -> AutoPolicy {
        var tuning = AutoTuning()
        tuning.trimRate = 0
        tuning.maxStep = GiB
        return AutoPolicy(reserve: GiB, tuning: tuning)
    }

    func guest(_ name: String, target: UInt64 = 0, actual: UInt64 = 0, available: UInt64, floor: UInt64?) -> GuestState {
        GuestState(name: name, ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB), connected: true,
                   target: target, actual: actual,
                   sample: GuestSample(at: .seconds(1), memTotal: GiB, memAvailable: available, balloonActual: actual),
                   availableFloor: floor)
    }

    /// 600 MiB short. g0 (floor 256 MiB, 400 available) has 112 MiB above
    /// its floor's edge; g1 (floor unknown) has 597.6 MiB of spare. Without
    /// the floor g0 would be asked for about 200 MiB, which its balloond
    /// refuses past 272 MiB available.
    @Test func aShortfallTakesNothingPastTheGuestsFloor() {
        var auto = policy()
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: GiB - 600 * MiB)
        let guests = [guest("g0", available: 400 * MiB, floor: 256 * MiB), guest("g1", available: 700 * MiB, floor: nil)]
        let taken = Dictionary(uniqueKeysWithValues: auto.round(host: host, guests: guests, now: .seconds(1)).map { ($0.guest, $0.target) })
        #expect(taken["g0"]! <= 400 * MiB - (256 + 32) * MiB)
        #expect(taken["g0"]! > 0)
        #expect(taken["g0"]! + taken["g1"]! == 600 * MiB)
    }

    /// g0 was told 200 MiB but stopped at 100 (its floor): as of its target it
    /// has 190 MiB available, under its floor's edge, so it is asked for
    /// nothing more and g1 covers the whole shortfall.
    @Test func aGuestStoppedAtItsFloorIsNotAskedForMore() {
        var auto = policy()
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: GiB - 600 * MiB)
        let guests = [
            guest("g0", target: 200 * MiB, actual: 100 * MiB, available: 290 * MiB, floor: 256 * MiB),
            guest("g1", available: 700 * MiB, floor: 64 * MiB),
        ]
        let changes = auto.round(host: host, guests: guests, now: .seconds(1))
        #expect(changes.map(\.guest) == ["g1"])
        #expect(changes.first?.target == 600 * MiB)
    }

    /// An idle guest's spare is trimmed down to its floor's edge + band, not
    /// to 10% of RAM, when its floor is higher.
    @Test func aTrimStopsAboveTheFloor() {
        var tuning = AutoTuning()
        tuning.trimRate = 1
        tuning.maxStep = GiB
        var auto = AutoPolicy(reserve: 0, tuning: tuning)
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 4 * GiB)
        let changes = auto.round(host: host, guests: [guest("g", available: 800 * MiB, floor: 256 * MiB)], now: .seconds(1))
        #expect(changes.first?.target == 800 * MiB - (256 + 32) * MiB)
    }
}

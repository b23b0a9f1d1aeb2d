// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import Foundation
import Testing

/// `auto`'s headroom boost (docs/policy.md): each pressure event multiplies a
/// guest's headroom by 1.5, at most once per 10 s, up to `boostLimit`
/// (`[Policy] HeadroomBoost=`), and the excess halves every 300 s.
@Suite struct AutoBoostTests {
    func guest(at t: Int64, psi: Double) -> GuestState {
        GuestState(name: "g", ramSize: GiB, limits: GuestLimits(min: 128 * MiB, max: GiB), connected: true, target: 0, actual: 0,
                   sample: GuestSample(at: .seconds(t), memTotal: GiB, memAvailable: 800 * MiB, psiSomeAvg10: psi, balloonActual: 0))
    }

    /// What an idle guest keeps available after four pressure events 10 s
    /// apart (t = 10…40) once a round at t = 200 trims all its spare.
    func keptAfterRepeatedPressure(limit: Double?) -> Int64 {
        var tuning = AutoTuning()
        tuning.trimRate = 1
        tuning.maxStep = GiB
        if let limit { tuning.boostLimit = limit }
        var auto = AutoPolicy(reserve: 0, tuning: tuning)
        let host = HostSample(at: .seconds(1), total: 8 * GiB, available: 4 * GiB)
        _ = auto.sampled(guest: guest(at: 0, psi: 0), host: host, now: .seconds(0))
        for k in 1...4 {
            let changes = auto.sampled(guest: guest(at: Int64(10 * k), psi: Double(2 * k)), host: host, now: .seconds(Int64(10 * k)))
            #expect(changes.isEmpty, "nothing to give back from an empty balloon")
        }
        let change = auto.round(host: host, guests: [guest(at: 200, psi: 8)], now: .seconds(200))
        return Int64(800 * MiB) - Int64(change.first?.target ?? 0)
    }

    @Test func theLimitCapsHowFarRepeatedPressureRaisesTheHeadroom() {
        let base = Double(Int64(Double(GiB) * 0.10))  // 10% of RAM, above the 96 MiB minimum
        // The last boost (t = 40) decays for 160 s: 1 + (b − 1) × 2^(−160/300).
        let decay = exp2(-160.0 / 300)
        func expected(_ boost: Double) -> Int64 { Int64(base * (1 + (boost - 1) * decay)) }
        // 1.5⁴ = 5.06 is capped at the default 2, or at 4.
        #expect(keptAfterRepeatedPressure(limit: nil) == expected(2))
        #expect(keptAfterRepeatedPressure(limit: 4) == expected(4))
        // 1: no boost; the headroom stays 10% of RAM however often it stalls.
        #expect(keptAfterRepeatedPressure(limit: 1) == Int64(base))
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonProtocol
import BalloonSystem

/// The pure policy's cost at scale, in-process: N fake guests' samples every
/// simulated second through `sampled`, a `round` every interval, targets
/// applied back to the models. Times only the policy calls.
struct PolicyRoundBench {
    var guests: Int
    var seconds: Int
    var ram: UInt64
    var seed: UInt64

    struct Result {
        var mode: PolicyMode
        var rounds: [Duration]
        /// Per simulated second: all N `sampled` calls together.
        var sampledPerSecond: [Duration]
        var changes: Int
    }

    func run(_ mode: PolicyMode) -> Result {
        var policy = makePolicy(PolicySettings(mode: mode, hostReserve: 2 << 30))
        var models = (0..<guests).map { FakeGuest(name: "g\($0)", ram: ram, seed: seed &+ UInt64($0), statsInterval: .seconds(1)) }
        let limits = GuestLimits(min: ram / 4, max: ram)
        var result = Result(mode: mode, rounds: [], sampledPerSecond: [], changes: 0)
        let every = Swift.max(1, Int(policy.interval.components.seconds))
        let wall = Timestamp(seconds: 0, microseconds: 0)
        // The host: as much as all the guests' RAM, less a quarter.
        let total = UInt64(guests) * ram * 3 / 4
        for second in 1...seconds {
            let now = Duration.seconds(second)
            var states: [GuestState] = []
            states.reserveCapacity(guests)
            var used: UInt64 = 0
            for i in models.indices {
                models[i].advance(to: now)
                let s = models[i].stats(at: now, wallClock: wall)
                used += models[i].memory
                states.append(GuestState(
                    name: models[i].name, ramSize: ram, limits: limits, connected: true,
                    target: models[i].target, actual: models[i].actual,
                    sample: GuestSample(
                        at: now, memTotal: s.stats[.totalMemory] ?? 0, memAvailable: s.stats[.availableMemory] ?? 0,
                        psiSomeAvg10: s.pressure?.some?.avg10, psiFullAvg10: s.pressure?.full?.avg10,
                        majorFaults: s.stats[.majorFaults], swapIn: s.stats[.swapIn], swapOut: s.stats[.swapOut],
                        memFree: s.stats[.freeMemory])))
            }
            let host = HostSample(at: now, total: total, available: used < total ? total - used : 0)
            var changes: [TargetChange] = []
            let start = SystemClock.monotonic()
            for state in states { changes += policy.sampled(guest: state, host: host, now: now) }
            result.sampledPerSecond.append(SystemClock.monotonic() - start)
            if second % every == 0 {
                let start = SystemClock.monotonic()
                changes += policy.round(host: host, guests: states, now: now)
                result.rounds.append(SystemClock.monotonic() - start)
            }
            result.changes += changes.count
            for change in changes {
                if let i = Int(change.guest.dropFirst()) { _ = try? models[i].setTarget(change.target) }
            }
        }
        return result
    }
}

extension Array where Element == Duration {
    /// The q-quantile in milliseconds (nearest rank).
    func quantileMilliseconds(_ q: Double) -> Double {
        guard !isEmpty else { return 0 }
        let sorted = self.sorted()
        let rank = Swift.min(sorted.count - 1, Swift.max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))
        let c = sorted[rank].components
        return Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15
    }
}

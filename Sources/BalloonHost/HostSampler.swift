// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonStats
import BalloonSystem

/// The host as the policy sees it: /proc/meminfo's MemTotal and MemAvailable
/// with /proc/pressure/memory, or, under a `HostMemory=` budget, the budget
/// less the memory behind the guests (HostBudget).
final class HostSampler {
    let meminfo: ProcFileReader?
    let pressure: ProcFileReader?

    init() {
        meminfo = try? ProcFileReader("/proc/meminfo")
        pressure = try? ProcFileReader("/proc/pressure/memory", capacity: 512)
    }

    /// The machine; zeroes if /proc cannot be read (the policy then takes nothing).
    func machine(at now: Duration) -> HostSample {
        let m = (try? meminfo?.read()).map { ProcParse.meminfo($0) } ?? [:]
        let p = (try? pressure?.read()).map { ProcParse.pressure($0) }
        return HostSample(
            at: now, total: m["MemTotal"] ?? 0, available: m["MemAvailable"] ?? 0,
            psiSomeAvg10: p?.some?.avg10, psiFullAvg10: p?.full?.avg10)
    }
}

/// Pure: a `HostMemory=` budget's sample. Each guest counts with what is
/// behind it on the host: its RAM file's allocated blocks when it has a
/// memory backend, else its RAM less what its balloon holds.
enum HostBudget {
    static func sample(budget: UInt64, behindGuests: [UInt64], at now: Duration) -> HostSample {
        let used = behindGuests.reduce(UInt64(0)) { $0 &+ $1 }
        return .budget(budget, used: used, at: now)
    }
}

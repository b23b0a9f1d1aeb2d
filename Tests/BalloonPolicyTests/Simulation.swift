// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy

let MiB: UInt64 = 1 << 20
let GiB: UInt64 = 1 << 30

/// A simulated guest: RAM, a workload's demand over time, and what a Linux
/// guest would report — MemAvailable, PSI memory when the demand exceeds
/// what the balloon leaves, refaults and an OOM kill past its swap.
struct SimGuest {
    var name: String
    var ramSize: UInt64
    var limits: GuestLimits
    /// Bytes the workload needs at a time (working set, page cache it reuses).
    var demand: (Duration) -> UInt64
    /// What the kernel itself keeps (never available).
    var kernel: UInt64 = 64 * MiB
    /// Past the memory it has, a guest swaps this much before an OOM kill.
    var swap: UInt64 = 256 * MiB
    var target: UInt64 = 0
    var actual: UInt64 = 0
    var connected = true
    var psiSome = 0.0
    var refaults: UInt64 = 0
    var oomKills = 0
    var sample: GuestSample?

    init(_ name: String, ram: UInt64 = GiB, min: UInt64 = 256 * MiB, shares: UInt32 = 1000,
         policy: GuestPolicy = .auto, demand: @escaping (Duration) -> UInt64) {
        self.name = name
        ramSize = ram
        limits = GuestLimits(min: min, max: ram, shares: shares, policy: policy)
        self.demand = demand
    }

    var memory: UInt64 { ramSize - actual }

    /// One second of guest life: the balloon reaches its target, the
    /// workload runs, the stats are what it would report.
    mutating func tick(at now: Duration) {
        actual = target
        let need = demand(now) + kernel
        let shortfall = need > memory ? need - memory : 0
        // PSI some: the share of time stalled, rising with the shortfall;
        // avg10 as the kernel's exponential average sampled each second.
        let instant = shortfall == 0 ? 0 : Swift.min(100, 5 + Double(shortfall) / Double(memory) * 200)
        psiSome += (instant - psiSome) * 0.1
        refaults += shortfall / 4096
        if shortfall > swap { oomKills += 1 }
        let available = need < memory ? memory - need : 0
        sample = GuestSample(
            at: now, memTotal: ramSize, memAvailable: available, psiSomeAvg10: psiSome, psiFullAvg10: psiSome / 4,
            fileRefaults: refaults, majorFaults: 0, swapIn: 0, swapOut: 0, memFree: available / 2)
    }

    var state: GuestState {
        GuestState(name: name, ramSize: ramSize, limits: limits, connected: connected, target: target, actual: actual, sample: sample)
    }
}

/// A host with a memory budget and guests on a fake clock: each second every
/// guest ticks and its sample goes through `sampled`; every `interval` the
/// policy runs a round. Records every change for the tests to check.
struct Simulation {
    var guests: [SimGuest]
    var policy: any HostPolicy
    var budget: UInt64
    var now: Duration = .zero
    var changes: [(at: Duration, change: TargetChange, fast: Bool)] = []
    /// Per second: host available, each guest's target.
    var hostAvailable: [Int64] = []
    var targets: [[UInt64]] = []

    init(_ guests: [SimGuest], policy: any HostPolicy, budget: UInt64) {
        self.guests = guests
        self.policy = policy
        self.budget = budget
    }

    /// The budget minus the memory behind the guests (all their RAM is backed).
    var host: HostSample {
        let used = guests.reduce(0) { $0 + $1.memory }
        return .budget(budget, used: used, at: now)
    }

    mutating func apply(_ list: [TargetChange], fast: Bool) {
        for change in list {
            let i = guests.firstIndex { $0.name == change.guest }!
            guests[i].target = change.target
            changes.append((now, change, fast))
        }
    }

    mutating func run(seconds: Int) {
        let step = Int64(policy.interval.components.seconds)
        for _ in 0..<seconds {
            now += .seconds(1)
            for i in guests.indices {
                guests[i].tick(at: now)
                apply(policy.sampled(guest: guests[i].state, host: host, now: now), fast: true)
            }
            if now.components.seconds % Swift.max(step, 1) == 0 {
                apply(policy.round(host: host, guests: guests.map(\.state), now: now), fast: false)
            }
            let used = guests.reduce(Int64(0)) { $0 + Int64($1.memory) }
            hostAvailable.append(Int64(budget) - used)
            targets.append(guests.map(\.target))
        }
    }

    /// Times a guest's target turned from rising to falling or back.
    func reversals(_ guest: Int, after: Int = 0) -> Int {
        var last = 0
        var count = 0
        for t in Swift.max(after, 1)..<targets.count {
            let d = targets[t][guest] == targets[t - 1][guest] ? 0 : (targets[t][guest] > targets[t - 1][guest] ? 1 : -1)
            if d != 0 {
                if last != 0 && d != last { count += 1 }
                last = d
            }
        }
        return count
    }
}

// SPDX-License-Identifier: Apache-2.0

/// `Mode=proxmox`: Proxmox VE pvestatd's auto-ballooning (`auto_balloning` in
/// pvestatd, `compute_alg1` in PVE/AutoBalloon.pm), ported step for step so a
/// comparison is fair and users moving from Proxmox get what they had.
///
/// In Proxmox a VM's "balloon" is the memory the guest has (QEMU's `actual`);
/// here that is `ramSize − actual`, and the target we set is
/// `ramSize − balloon`. `balloon_min` is Min, `maxmem` is Max, `freemem` is
/// the guest's MemFree (MemAvailable when the guest does not report it).
public struct ProxmoxPolicy: HostPolicy {
    public var mode: PolicyMode { .proxmox }
    public let interval: Duration
    /// Memory one VM may move in a round (pvestatd: 100 MiB).
    public let maxChange: Int64
    /// The share of host memory to fill (node option `ballooning-target`, 80%).
    public let fill: Double
    /// Requests smaller than this are ignored (compute_alg1: 10 MiB).
    public static let deadBand: Int64 = 10 << 20

    public init(interval: Duration = .seconds(10), maxChange: UInt64 = 100 << 20, fill: Double = 0.8) {
        self.interval = interval
        self.maxChange = maxChange.signed
        self.fill = fill
    }

    /// pvestatd: `goal = MemTotal × 80% − MemUsed` with MemUsed = MemTotal − MemAvailable.
    public func goal(_ host: HostSample) -> Int64 {
        let used = host.total.signed - Swift.min(host.available, host.total).signed
        return Int64(Double(host.total) * fill) - used
    }

    public mutating func round(host: HostSample, guests: [GuestState], now: Duration) -> [TargetChange] {
        let vms = guests.filter { $0.managed && $0.sample != nil && $0.limits.shares > 0 }
            .map { VM(state: $0) }
        let result = Self.compute(vms, goal: goal(host), maxChange: maxChange)
        var changes: [TargetChange] = []
        for vm in vms {
            guard let balloon = result[vm.name] else { continue }
            let target = vm.state.clamped(vm.state.ramSize.signed - balloon)
            if target != vm.state.target {
                changes.append(TargetChange(guest: vm.name, target: target, reason: "proxmox: guest memory \(mib(vm.balloon)) → \(mib(balloon))"))
            }
        }
        return changes
    }

    /// Proxmox acts only in rounds.
    public mutating func sampled(guest: GuestState, host: HostSample, now: Duration) -> [TargetChange] { [] }

    /// One VM as compute_alg1 sees it.
    struct VM {
        let state: GuestState
        var name: String { state.name }
        /// Memory the guest has now.
        var balloon: Int64 { state.memory }
        var balloonMin: Int64 { Swift.min(state.limits.min, state.ramSize).signed }
        var maxmem: Int64 { Swift.min(state.limits.max, state.ramSize).signed }
        var shares: Int64 { Int64(state.limits.shares) }
        var freemem: Int64 { (state.sample?.memFree ?? state.sample?.memAvailable ?? 0).signed }
        /// idlist2: enough free memory (more than a quarter of min) and at or above min.
        var hasFreeMemory: Bool { freemem > 0 && Double(freemem) > Double(balloonMin) * 0.25 && balloon >= balloonMin }
    }

    /// compute_alg1: the new guest memory per VM (only those it moves).
    static func compute(_ vms: [VM], goal: Int64, maxChange: Int64) -> [String: Int64] {
        var res: [String: Int64] = [:]
        let pressured = vms.filter { !$0.hasFreeMemory }
        let free = vms.filter { $0.hasFreeMemory }
        if goal > deadBand {
            // Grow: VMs under memory pressure first; all of them if that made no progress.
            let rest = change(&res, pressured, goal, maxChange)
            if rest >= goal { _ = change(&res, vms, rest, maxChange) }
        } else if goal < -deadBand {
            // Shrink: VMs with free memory first; all of them if that made no progress.
            let rest = change(&res, free, goal, maxChange)
            if rest <= goal { _ = change(&res, vms, rest, maxChange) }
        }
        return res
    }

    /// compute_alg1's `$change_func`: spreads `bytes` over `vms` by shares,
    /// each at most `maxChange` from where it is; returns what is left.
    static func change(_ res: inout [String: Int64], _ vms: [VM], _ bytes: Int64, _ maxChange: Int64) -> Int64 {
        var rest = bytes
        var repeating = true
        var progress: Int64 = 1
        var done = Set<String>()
        while rest != 0 && repeating && progress != 0 {
            repeating = false
            progress = 0
            var sharesTotal: Int64 = 0
            var allocOld: Int64 = 0
            for vm in vms where !done.contains(vm.name) {
                allocOld += (res[vm.name] ?? vm.balloon) - vm.balloonMin
                sharesTotal += vm.shares
            }
            var changes: Int64 = 0
            let allocNew = allocOld + rest
            for vm in vms where !done.contains(vm.name) {
                // Perl's int() truncates toward zero.
                var desired = vm.balloonMin + Int64((Double(allocNew) / Double(sharesTotal) * Double(vm.shares)).rounded(.towardZero))
                if desired > vm.maxmem {
                    desired = vm.maxmem
                    repeating = true
                } else if desired < vm.balloonMin {
                    desired = vm.balloonMin
                    repeating = true
                }
                let balloon: Int64
                if bytes > 0 && desired - vm.balloon > 0 {
                    balloon = Swift.min(vm.balloon + maxChange, desired)
                } else if desired - vm.balloon < 0 {
                    balloon = Swift.max(vm.balloon - maxChange, desired)
                } else {
                    done.insert(vm.name)
                    continue
                }
                let diff = balloon - vm.balloon
                if diff != 0 {
                    let old = res[vm.name] ?? vm.balloon
                    res[vm.name] = balloon
                    let change = balloon - old
                    if change != 0 {
                        changes += change
                        progress += Swift.abs(diff)
                        repeating = true
                    }
                }
            }
            rest -= changes
        }
        return rest
    }
}

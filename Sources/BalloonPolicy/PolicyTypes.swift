// SPDX-License-Identifier: Apache-2.0

// The contract between balloon-hostd's loop (BalloonHost) and its policies.
// Pure: no clock, no I/O. The agent samples the host and every guest, hands
// the policy what it saw with the time it saw it, and applies the targets the
// policy returns. Every size is in bytes; a balloon target is what the guest's
// balloon holds (the guest keeps ramSize − target), as in protocol v1.

/// Which algorithm decides the targets (`[Policy] Mode=` / `[Guest] Policy=`).
public enum PolicyMode: String, Sendable, CaseIterable {
    /// balloond's own: host reserve, spare memory, shares, PSI fast path.
    case auto
    /// Proxmox VE pvestatd's auto-ballooning, reproduced for comparison.
    case proxmox
    /// oVirt MoM's balloon.rules, reproduced for comparison.
    case mom
    /// No automatic targets: only what an operator sets.
    case manual
}

/// Whether the host policy may move one guest's target (`[Guest] Policy=`).
public enum GuestPolicy: String, Sendable, CaseIterable {
    /// The host policy decides (the default).
    case auto
    /// Only an operator's `set` moves it; the policy leaves it alone.
    case manual
    /// The agent does not balloon this guest at all (target stays 0).
    case off
}

/// An operator's bounds for one guest (`[Guest] Min= Max= Shares=`).
public struct GuestLimits: Sendable, Equatable {
    /// The guest always keeps at least this much memory: target ≤ ramSize − min.
    public var min: UInt64
    /// The guest never has more than this: target ≥ ramSize − max (max ≤ ramSize).
    public var max: UInt64
    /// Relative weight: more shares, less taken (Proxmox's meaning).
    public var shares: UInt32
    public var policy: GuestPolicy

    public init(min: UInt64, max: UInt64, shares: UInt32 = 1000, policy: GuestPolicy = .auto) {
        self.min = min
        self.max = max
        self.shares = shares
        self.policy = policy
    }
}

/// One stats sample from a guest, as the agent received it.
public struct GuestSample: Sendable, Equatable {
    /// When the agent received it (the agent's monotonic clock).
    public var at: Duration
    /// Guest MemTotal (virtio `total-memory`).
    public var memTotal: UInt64
    /// Guest MemAvailable (virtio `available-memory`).
    public var memAvailable: UInt64
    /// Memory the balloon holds that the guest could have back at once
    /// (free memory held by the free-memory mode); 0 when the guest does not say.
    public var reclaimableHeld: UInt64
    /// PSI memory avg10, in percent; nil when the guest kernel has no PSI.
    public var psiSomeAvg10: Double?
    public var psiFullAvg10: Double?
    /// PSI memory `some` total, microseconds since guest boot: the stall in
    /// the last stats interval itself, where avg10 is a 10 s average the
    /// kernel recomputes only every 2 s.
    public var psiSomeTotal: UInt64?
    /// Cumulative counters since guest boot (the policy takes rates between
    /// samples; a counter going backwards means the guest restarted).
    public var fileRefaults: UInt64?
    public var majorFaults: UInt64?
    public var swapIn: UInt64?
    public var swapOut: UInt64?
    /// Guest MemFree (virtio `free-memory`), which Proxmox (`freemem`) and
    /// MoM (`mem_unused`) read; nil when not reported (they then use memAvailable).
    public var memFree: UInt64?
    /// The balloon's size when the guest took the sample (STATS `balloon.actual`):
    /// MemAvailable is as of that size. nil: the policy uses `GuestState.actual`.
    public var balloonActual: UInt64?

    public init(
        at: Duration, memTotal: UInt64, memAvailable: UInt64, reclaimableHeld: UInt64 = 0,
        psiSomeAvg10: Double? = nil, psiFullAvg10: Double? = nil, psiSomeTotal: UInt64? = nil,
        fileRefaults: UInt64? = nil, majorFaults: UInt64? = nil, swapIn: UInt64? = nil, swapOut: UInt64? = nil,
        memFree: UInt64? = nil, balloonActual: UInt64? = nil
    ) {
        self.at = at
        self.memTotal = memTotal
        self.memAvailable = memAvailable
        self.reclaimableHeld = reclaimableHeld
        self.psiSomeAvg10 = psiSomeAvg10
        self.psiFullAvg10 = psiFullAvg10
        self.psiSomeTotal = psiSomeTotal
        self.fileRefaults = fileRefaults
        self.majorFaults = majorFaults
        self.swapIn = swapIn
        self.swapOut = swapOut
        self.memFree = memFree
        self.balloonActual = balloonActual
    }
}

/// What the agent knows about one guest when the policy runs.
public struct GuestState: Sendable, Equatable {
    /// The guest's name (its config file's or its discovered socket's).
    public var name: String
    /// The guest's RAM as the host gave it (`RamSize=` or the guest's MemTotal
    /// plus what the kernel reserves; the agent decides, the policy trusts it).
    public var ramSize: UInt64
    public var limits: GuestLimits
    /// A live session: the agent can set a target now.
    public var connected: Bool
    /// The target in force (what the agent last set) and the balloon's size.
    public var target: UInt64
    public var actual: UInt64
    /// The newest stats sample; nil before the first.
    public var sample: GuestSample?
    /// The guest's own floor on MemAvailable (its balloond's `query` limits,
    /// `MemAvailableFloor=`): its balloon stops inflating near it and gives
    /// memory back below it, whatever the target. nil: not known.
    public var availableFloor: UInt64?
    /// The guest's balloond said it holds the balloon short of the target
    /// for its own reason (its quiet period after pressure, its floor, its
    /// largest balloon, a lock it could not make: `TARGET_UNREACHABLE`),
    /// and has not reached a target since.
    public var heldByGuest: Bool

    public init(
        name: String, ramSize: UInt64, limits: GuestLimits, connected: Bool,
        target: UInt64, actual: UInt64, sample: GuestSample?, availableFloor: UInt64? = nil,
        heldByGuest: Bool = false
    ) {
        self.name = name
        self.ramSize = ramSize
        self.limits = limits
        self.connected = connected
        self.target = target
        self.actual = actual
        self.sample = sample
        self.availableFloor = availableFloor
        self.heldByGuest = heldByGuest
    }
}

/// The host as the agent sampled it. With `[Host] HostMemory=` the agent
/// reports the budget, not the machine: `total` is the budget and
/// `available` is the budget minus the memory behind the guests (their RAM
/// files' allocated blocks); otherwise both come from /proc/meminfo.
public struct HostSample: Sendable, Equatable {
    public var at: Duration
    public var total: UInt64
    public var available: UInt64
    /// How far the memory behind the guests exceeds a `HostMemory=` budget
    /// (`available` is then 0): how short the host really is. Always 0 for
    /// the machine, whose MemAvailable cannot say it.
    public var overBudget: UInt64
    /// Host PSI memory avg10 in percent; nil without PSI (or under a budget).
    public var psiSomeAvg10: Double?
    public var psiFullAvg10: Double?
    /// A `HostMemory=` budget's account, not the machine: being short of it
    /// stalls nothing on the host.
    public var isBudget: Bool

    public init(
        at: Duration, total: UInt64, available: UInt64, overBudget: UInt64 = 0,
        psiSomeAvg10: Double? = nil, psiFullAvg10: Double? = nil, isBudget: Bool = false
    ) {
        self.at = at
        self.total = total
        self.available = available
        self.overBudget = overBudget
        self.psiSomeAvg10 = psiSomeAvg10
        self.psiFullAvg10 = psiFullAvg10
        self.isBudget = isBudget
    }

    /// A budget's sample: `total` is the budget, `used` what is behind the guests.
    public static func budget(_ budget: UInt64, used: UInt64, at now: Duration) -> HostSample {
        HostSample(
            at: now, total: budget, available: budget > used ? budget - used : 0, overBudget: used > budget ? used - budget : 0,
            isBudget: true)
    }
}

/// A target the policy wants set, and why (logged and shown by `guest-status`).
public struct TargetChange: Sendable, Equatable {
    public var guest: String
    public var target: UInt64
    public var reason: String

    public init(guest: String, target: UInt64, reason: String) {
        self.guest = guest
        self.target = target
        self.reason = reason
    }
}

/// `[Policy]` settings. Defaults are documented in docs/policy.md.
public struct PolicySettings: Sendable, Equatable {
    public var mode: PolicyMode
    /// Host memory (or budget) that must stay available.
    public var hostReserve: UInt64
    /// Time between rounds (proxmox and mom: 10 s; auto: 1 s).
    public var interval: Duration?
    /// The most one guest's target moves in one round; nil: the mode's own.
    public var maxStep: UInt64?
    /// `auto`'s finer knobs (headroom, thresholds, hysteresis); docs/policy.md.
    public var tuning: AutoTuning
    /// `proxmox`: the share of host memory to fill (its `ballooning-target`, 80%).
    public var proxmoxTarget: Double

    public init(
        mode: PolicyMode = .auto, hostReserve: UInt64 = 512 << 20, interval: Duration? = nil, maxStep: UInt64? = nil,
        tuning: AutoTuning = AutoTuning(), proxmoxTarget: Double = 0.8
    ) {
        self.mode = mode
        self.hostReserve = hostReserve
        self.interval = interval
        self.maxStep = maxStep
        self.tuning = tuning
        self.proxmoxTarget = proxmoxTarget
    }
}

/// A host policy. The agent calls `round` every `interval` and `sampled`
/// whenever a guest's stats arrive; both return the targets to set (only
/// those that change). Guests with `GuestPolicy.manual`/`.off` or not
/// connected are passed for the accounting but must not be given targets.
public protocol HostPolicy: Sendable {
    var mode: PolicyMode { get }
    /// Time between rounds.
    var interval: Duration { get }
    mutating func round(host: HostSample, guests: [GuestState], now: Duration) -> [TargetChange]
    /// The fast path: a guest's new sample may warrant giving memory back now.
    mutating func sampled(guest: GuestState, host: HostSample, now: Duration) -> [TargetChange]
    /// A guest's own balloond just gave memory back under pressure (its
    /// `DEFLATED`; `guest.actual` is the balloon after it): the other guests
    /// may have to stop inflating now rather than at the next round.
    mutating func deflated(guest: GuestState, guests: [GuestState], host: HostSample, now: Duration) -> [TargetChange]
    /// A guest's balloon just grew (its BALLOON_CHANGE, TARGET_* or STATS
    /// showed it larger than before): it may have to stop while another
    /// guest takes memory back at once.
    mutating func grew(guest: GuestState, host: HostSample, now: Duration) -> [TargetChange]
}

extension HostPolicy {
    /// Proxmox and MoM act only in rounds.
    public mutating func deflated(guest: GuestState, guests: [GuestState], host: HostSample, now: Duration) -> [TargetChange] { [] }
    public mutating func grew(guest: GuestState, host: HostSample, now: Duration) -> [TargetChange] { [] }
}

// SPDX-License-Identifier: Apache-2.0
/// One row of `list-guests` (and the head of `guest-status`): what
/// `balloonctl list` shows. Sizes in bytes; nil where not known yet.
public struct GuestSummary: ReplyValue {
    public var name: String
    /// The channel, as `balloonctl` would spell it (`unix:PATH`, …).
    public var channel: String
    /// `config` (a file in GuestDirectory), `discovered` (a watched socket) or `serve`.
    public var source: String
    public var connected: Bool
    public var policy: AgentCommand.GuestPolicyName
    public var ramSize: UInt64?
    /// What the agent keeps applying (the policy's or an operator's).
    public var target: UInt64?
    /// The balloon's size in the newest report.
    public var actual: UInt64?
    /// Guest MemAvailable in the newest stats.
    public var available: UInt64?
    /// The guest's own MemAvailable floor (its `query` limits at sync):
    /// `auto` takes no memory past it.
    public var availableFloor: UInt64?
    public var psiSomeAvg10: Double?
    public var psiFullAvg10: Double?
    /// Host memory given back by punching the guest's RAM file.
    public var bytesFreed: UInt64
    /// Why the target last changed (the policy's reason, or `set by an operator`).
    public var reason: String?
    /// Why the guest's balloon stops short of the target, in the guest's own
    /// words (its last `TARGET_UNREACHABLE`, or its `query` at sync: a quiet
    /// period after pressure, its MemAvailable floor, …); nil once it reached
    /// the target. The agent's view, so a client learns it without asking the guest.
    public var held: StopReason?

    public init(name: String, channel: String, source: String, connected: Bool, policy: AgentCommand.GuestPolicyName) {
        self.name = name
        self.channel = channel
        self.source = source
        self.connected = connected
        self.policy = policy
        bytesFreed = 0
    }

    public var json: JSON {
        [
            "name": .string(name), "channel": .string(channel), "source": .string(source),
            "connected": .bool(connected), "policy": .string(policy.rawValue),
            "ram-size": ramSize.map(JSON.uint) ?? .null, "target": target.map(JSON.uint) ?? .null,
            "actual": actual.map(JSON.uint) ?? .null, "available": available.map(JSON.uint) ?? .null,
            "available-floor": availableFloor.map(JSON.uint) ?? .null,
            "psi-some-avg10": psiSomeAvg10.map(JSON.double) ?? .null,
            "psi-full-avg10": psiFullAvg10.map(JSON.double) ?? .null,
            "bytes-freed": .uint(bytesFreed), "reason": reason.map(JSON.string) ?? .null,
            "held": held?.json ?? .null,
        ]
    }

    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "guest")
        name = try f.string("name")
        channel = try f.string("channel")
        source = try f.string("source")
        connected = try f.bool("connected")
        policy = try f.enumeration("policy", AgentCommand.GuestPolicyName.self)
        ramSize = try f.optionalUInt64("ram-size")
        target = try f.optionalUInt64("target")
        actual = try f.optionalUInt64("actual")
        available = try f.optionalUInt64("available")
        availableFloor = try f.optionalUInt64("available-floor")
        psiSomeAvg10 = try f.optionalDouble("psi-some-avg10")
        psiFullAvg10 = try f.optionalDouble("psi-full-avg10")
        bytesFreed = try f.uint64("bytes-freed")
        reason = try f.optionalString("reason")
        if let h = try f.optionalObject("held") { held = try StopReason(fields: h) }
    }
}

/// The `list-guests` reply, guests sorted by name.
public struct GuestListReply: ReplyValue {
    public var guests: [GuestSummary]
    public init(guests: [GuestSummary]) { self.guests = guests }
    public var json: JSON { ["guests": .array(guests.map(\.json))] }
    public init(json: JSON) throws(ProtocolError) {
        var out: [GuestSummary] = []
        for g in try Fields(json, "list-guests reply").array("guests") { out.append(try GuestSummary(json: g)) }
        guests = out
    }
}

/// The `guest-status` reply: the summary and the session's counters (the
/// same counters `serve-status` reports for `balloonctl serve`).
public struct GuestStatusReply: ReplyValue {
    public var guest: GuestSummary
    public var session: ServeStatus
    public init(guest: GuestSummary, session: ServeStatus) {
        self.guest = guest
        self.session = session
    }
    public var json: JSON { ["guest": guest.json, "session": session.json] }
    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "guest-status reply")
        guest = try GuestSummary(json: try f.required("guest"))
        session = try ServeStatus(json: try f.required("session"))
    }
}

/// The `select-guest` reply.
public struct GuestSelectedReply: ReplyValue {
    public var name: String
    public init(name: String) { self.name = name }
    public var json: JSON { ["name": .string(name)] }
    public init(json: JSON) throws(ProtocolError) { name = try Fields(json, "select-guest reply").string("name") }
}

/// The `policy-status` reply: the mode and the host as the last round saw it.
public struct PolicyStatusReply: ReplyValue {
    public var mode: String
    public var interval: Duration
    /// MemTotal, or the `HostMemory=` budget.
    public var hostTotal: UInt64
    /// MemAvailable, or the budget minus the guests' RAM files' allocated blocks.
    public var hostAvailable: UInt64
    /// What the policy keeps available: `HostReserve=`, a percentage resolved against `hostTotal`.
    public var hostReserve: UInt64
    /// True when `HostMemory=` sets a budget.
    public var budget: Bool
    public var rounds: UInt64
    public var targetsSet: UInt64

    public init(mode: String, interval: Duration, hostTotal: UInt64, hostAvailable: UInt64, hostReserve: UInt64, budget: Bool, rounds: UInt64, targetsSet: UInt64) {
        self.mode = mode
        self.interval = interval
        self.hostTotal = hostTotal
        self.hostAvailable = hostAvailable
        self.hostReserve = hostReserve
        self.budget = budget
        self.rounds = rounds
        self.targetsSet = targetsSet
    }

    public var json: JSON {
        [
            "mode": .string(mode), "interval-ms": .uint(interval.wholeMilliseconds),
            "host-total": .uint(hostTotal), "host-available": .uint(hostAvailable),
            "host-reserve": .uint(hostReserve), "budget": .bool(budget),
            "rounds": .uint(rounds), "targets-set": .uint(targetsSet),
        ]
    }

    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "policy-status reply")
        mode = try f.string("mode")
        interval = .milliseconds(exactly: try f.uint64("interval-ms"))
        hostTotal = try f.uint64("host-total")
        hostAvailable = try f.uint64("host-available")
        hostReserve = try f.uint64("host-reserve")
        budget = try f.bool("budget")
        rounds = try f.uint64("rounds")
        targetsSet = try f.uint64("targets-set")
    }
}

extension Fields {
    func optionalDouble(_ key: String) throws(ProtocolError) -> Double? {
        guard optional(key) != nil else { return nil }
        return try double(key)
    }
}

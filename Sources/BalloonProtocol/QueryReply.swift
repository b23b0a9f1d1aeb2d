// SPDX-License-Identifier: Apache-2.0
/// Why the balloon stops short of its target (`reason` in `query` and
/// `TARGET_UNREACHABLE`).
public struct StopReason: Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        case maxBalloon = "max-balloon"
        case memAvailableFloor = "mem-available-floor"
        case reserveFailed = "reserve-failed"
        case pressure
    }

    public var code: Code
    public var desc: String

    public init(code: Code, desc: String) {
        self.code = code
        self.desc = desc
    }

    /// `desc` comes from the guest: printed with its control characters escaped.
    public var description: String { desc.isEmpty ? code.rawValue : "\(code.rawValue): \(PrintableText.escape(desc))" }

    public var json: JSON { ["code": .string(code.rawValue), "desc": .string(desc)] }

    init(fields f: Fields) throws(ProtocolError) {
        self.init(code: try f.enumeration("code", Code.self), desc: try f.string("desc"))
    }
}

/// Why the balloon gave memory back (`DEFLATED`, `query` `last-deflate`;
/// docs/pressure.md).
public enum DeflateReason: String, Sendable, CaseIterable {
    case psiLight = "psi-light"
    case psiHeavy = "psi-heavy"
    case psiSevere = "psi-severe"
    case memAvailableFloor = "mem-available-floor"
    case directReclaim = "direct-reclaim"
    case oomKill = "oom-kill"
    case holderKilled = "holder-killed"
}

/// When a pressure deflate happened, in guest `CLOCK_MONOTONIC` time: the
/// signal seen, the first memory back with the kernel (absent when nothing
/// was released in the step itself), all of it back.
public struct DeflateTiming: Sendable, Equatable {
    public var signalAt: MonotonicTimestamp
    public var firstReturnedAt: MonotonicTimestamp?
    public var deflatedAt: MonotonicTimestamp

    public init(signalAt: MonotonicTimestamp, firstReturnedAt: MonotonicTimestamp?, deflatedAt: MonotonicTimestamp) {
        self.signalAt = signalAt
        self.firstReturnedAt = firstReturnedAt
        self.deflatedAt = deflatedAt
    }

    /// `signal-at`, [`first-returned-at`,] `deflated-at`, in that order.
    public var members: [(String, JSON)] {
        [("signal-at", .uint(signalAt.microseconds))]
            + (firstReturnedAt.map { [("first-returned-at", JSON.uint($0.microseconds))] } ?? [])
            + [("deflated-at", .uint(deflatedAt.microseconds))]
    }

    /// nil when the object carries no times.
    init?(fields f: Fields) throws(ProtocolError) {
        guard f.value["signal-at"] != nil else { return nil }
        signalAt = MonotonicTimestamp(microseconds: try f.uint64("signal-at"))
        firstReturnedAt = try f.optionalUInt64("first-returned-at").map(MonotonicTimestamp.init(microseconds:))
        deflatedAt = MonotonicTimestamp(microseconds: try f.uint64("deflated-at"))
    }
}

/// The `query` reply.
public struct QueryReply: ReplyValue {
    public enum State: String, Sendable, CaseIterable { case idle, inflating, deflating, unreachable }

    public struct Limits: Sendable, Equatable {
        public var memoryTotal: UInt64
        public var maxBalloon: UInt64
        public var memAvailableFloor: UInt64
        public var chunkSize: UInt64

        public init(memoryTotal: UInt64, maxBalloon: UInt64, memAvailableFloor: UInt64, chunkSize: UInt64) {
            self.memoryTotal = memoryTotal
            self.maxBalloon = maxBalloon
            self.memAvailableFloor = memAvailableFloor
            self.chunkSize = chunkSize
        }
    }

    /// The pressure backoff (docs/pressure.md).
    public struct Pressure: Sendable, Equatable {
        public enum State: String, Sendable, CaseIterable { case calm, backoff }

        public struct LastDeflate: Sendable, Equatable {
            public var bytes: UInt64
            public var reason: DeflateReason
            /// How long ago it was.
            public var ago: Duration
            public var timing: DeflateTiming?

            public init(bytes: UInt64, reason: DeflateReason, ago: Duration, timing: DeflateTiming?) {
                self.bytes = bytes
                self.reason = reason
                self.ago = ago
                self.timing = timing
            }
        }

        public var state: State
        /// The size the balloon may not grow above during the backoff.
        public var ceiling: UInt64?
        /// How long the guest must stay free of pressure before the balloon grows again.
        public var quietFor: Duration?
        /// Every byte given back to pressure (or lost to the OOM killer) since the daemon started.
        public var deflatedTotal: UInt64
        public var lastDeflate: LastDeflate?
        /// Page cache the daemon reclaimed so that regrowth could take it
        /// (`[Pressure] RegrowColdCache=`) since it started; nil from a daemon
        /// that does not say.
        public var regrowthReclaimedTotal: UInt64?

        public init(
            state: State, ceiling: UInt64?, quietFor: Duration?, deflatedTotal: UInt64, lastDeflate: LastDeflate?,
            regrowthReclaimedTotal: UInt64? = nil
        ) {
            self.state = state
            self.ceiling = ceiling
            self.quietFor = quietFor
            self.deflatedTotal = deflatedTotal
            self.lastDeflate = lastDeflate
            self.regrowthReclaimedTotal = regrowthReclaimedTotal
        }

        public var json: JSON {
            let last: JSON = lastDeflate.map { d in
                .object([("bytes", .uint(d.bytes)), ("reason", .string(d.reason.rawValue)), ("ago-ms", .uint(d.ago.wholeMilliseconds))]
                    + (d.timing?.members ?? []))
            } ?? .null
            return [
                "state": .string(state.rawValue), "ceiling": ceiling.map(JSON.uint) ?? .null,
                "quiet-for-ms": quietFor.map { .uint($0.wholeMilliseconds) } ?? .null,
                "deflated-total": .uint(deflatedTotal), "last-deflate": last,
                "regrowth-reclaimed-total": regrowthReclaimedTotal.map(JSON.uint) ?? .null,
            ]
        }

        init(fields f: Fields) throws(ProtocolError) {
            state = try f.enumeration("state", State.self)
            ceiling = try f.optionalUInt64("ceiling")
            quietFor = try f.optionalUInt64("quiet-for-ms").map(Duration.milliseconds(exactly:))
            deflatedTotal = try f.uint64("deflated-total")
            regrowthReclaimedTotal = try f.optionalUInt64("regrowth-reclaimed-total")
            if let d = try f.optionalObject("last-deflate") {
                lastDeflate = LastDeflate(
                    bytes: try d.uint64("bytes"), reason: try d.enumeration("reason", DeflateReason.self),
                    ago: .milliseconds(exactly: try d.uint64("ago-ms")), timing: try DeflateTiming(fields: d))
            } else {
                lastDeflate = nil
            }
        }
    }

    public var target: UInt64
    public var effectiveTarget: UInt64
    public var actual: UInt64
    public var state: State
    public var limits: Limits
    /// nil when actual will reach the target.
    public var reason: StopReason?
    public var pressure: Pressure
    /// The free-memory mode's part of the balloon (docs/free-memory.md); nil
    /// from a daemon that does not have the mode.
    public var freeMemory: FreeMemory?

    public init(
        target: UInt64, effectiveTarget: UInt64, actual: UInt64, state: State, limits: Limits, reason: StopReason?,
        pressure: Pressure, freeMemory: FreeMemory? = nil
    ) {
        self.target = target
        self.effectiveTarget = effectiveTarget
        self.actual = actual
        self.state = state
        self.limits = limits
        self.reason = reason
        self.pressure = pressure
        self.freeMemory = freeMemory
    }

    public var json: JSON {
        var members: [(String, JSON)] = [
            ("target", .uint(target)), ("effective-target", .uint(effectiveTarget)), ("actual", .uint(actual)),
            ("state", .string(state.rawValue)),
            ("limits", [
                "memory-total": .uint(limits.memoryTotal), "max-balloon": .uint(limits.maxBalloon),
                "mem-available-floor": .uint(limits.memAvailableFloor), "chunk-size": .uint(limits.chunkSize),
            ]),
            ("reason", reason?.json ?? .null),
            ("pressure", pressure.json),
        ]
        if let freeMemory { members.append(("free-memory", freeMemory.json)) }
        return .object(members)
    }

    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "query reply")
        target = try f.uint64("target")
        effectiveTarget = try f.uint64("effective-target")
        actual = try f.uint64("actual")
        state = try f.enumeration("state", State.self)
        let l = try f.object("limits")
        limits = Limits(
            memoryTotal: try l.uint64("memory-total"), maxBalloon: try l.uint64("max-balloon"),
            memAvailableFloor: try l.uint64("mem-available-floor"), chunkSize: try l.uint64("chunk-size"))
        reason = try f.optionalObject("reason").map { r throws(ProtocolError) in try StopReason(fields: r) }
        pressure = try Pressure(fields: try f.object("pressure"))
        freeMemory = try f.optionalObject("free-memory").map { m throws(ProtocolError) in try FreeMemory(fields: m) }
    }
}

extension QueryReply {
    /// The free-memory mode in `query`: the two parts of the one balloon are
    /// the host's `target` and this `target`; the balloon follows the larger.
    public struct FreeMemory: Sendable, Equatable {
        public var allowed: Bool
        public var enabled: Bool
        /// MemFree the mode leaves to the guest.
        public var cushion: UInt64
        /// The balloon size the mode asks for (0 when off).
        public var target: UInt64
        /// Of `actual`, the free memory the mode holds (the `stats` reply's
        /// `balloon.free-memory-held`).
        public var held: UInt64
        /// Cold page cache reclaim: nil when not configured.
        public var coldCache: ColdCache?

        public struct ColdCache: Sendable, Equatable {
            public enum State: String, Sendable, CaseIterable {
                /// Reclaiming a step at a time.
                case reclaiming
                /// Pressure or refaults were seen: waiting before the next step.
                case backoff
                /// The kernel has no cgroup v2 `memory.reclaim`.
                case unavailable
                /// The mode is off.
                case idle
            }
            public var state: State
            /// Bytes `memory.reclaim` took since the daemon started.
            public var reclaimedTotal: UInt64

            public init(state: State, reclaimedTotal: UInt64) {
                self.state = state
                self.reclaimedTotal = reclaimedTotal
            }
        }

        public init(allowed: Bool, enabled: Bool, cushion: UInt64, target: UInt64, held: UInt64, coldCache: ColdCache?) {
            self.allowed = allowed
            self.enabled = enabled
            self.cushion = cushion
            self.target = target
            self.held = held
            self.coldCache = coldCache
        }

        public var json: JSON {
            [
                "allowed": .bool(allowed), "enabled": .bool(enabled), "cushion": .uint(cushion), "target": .uint(target),
                "held": .uint(held),
                "cold-cache": coldCache.map { c in ["state": .string(c.state.rawValue), "reclaimed-total": .uint(c.reclaimedTotal)] } ?? .null,
            ]
        }

        init(fields f: Fields) throws(ProtocolError) {
            allowed = try f.bool("allowed")
            enabled = try f.bool("enabled")
            cushion = try f.uint64("cushion")
            target = try f.uint64("target")
            held = try f.uint64("held")
            if let c = try f.optionalObject("cold-cache") {
                coldCache = ColdCache(state: try c.enumeration("state", ColdCache.State.self), reclaimedTotal: try c.uint64("reclaimed-total"))
            } else {
                coldCache = nil
            }
        }
    }
}

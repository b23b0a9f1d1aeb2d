// SPDX-License-Identifier: Apache-2.0
import BalloonStats

// The `return` values of the v1 commands (docs/protocol.md). Each encodes
// to the documented JSON and decodes with errors that name the field;
// members a newer daemon adds are ignored (docs/protocol.md "Versioning").

/// A command's typed `return` value.
public protocol ReplyValue: Sendable, Equatable {
    init(json: JSON) throws(ProtocolError)
    var json: JSON { get }
}

/// The `info` reply.
public struct InfoReply: ReplyValue {
    public enum HugePageAdvice: String, Sendable, CaseIterable { case advise, forbid, leave }

    /// A PSI trigger in force: as configured, as the kernel took it.
    public struct Trigger: Sendable, Equatable {
        public enum Tier: String, Sendable, CaseIterable { case light, heavy, severe }
        public var tier: Tier
        public var requested: String
        public var active: String
        /// The kernel wanted a 2 s window (no CAP_SYS_RESOURCE).
        public var twoSecondFallback: Bool

        public init(tier: Tier, requested: String, active: String, twoSecondFallback: Bool) {
            self.tier = tier
            self.requested = requested
            self.active = active
            self.twoSecondFallback = twoSecondFallback
        }
    }

    public var version: String
    public var protocolVersion: Int
    public var features: [String]
    public var pageSize: UInt64
    public var memoryTotal: UInt64
    public var maxBalloon: UInt64
    public var memAvailableFloor: UInt64
    public var chunkSize: UInt64
    public var transparentHugePages: Bool
    public var hugePageAdvice: HugePageAdvice
    public var channel: String
    public var pressureTriggers: [Trigger]
    public var holderProcesses: Bool
    public var protectedFromOOMKiller: Bool

    public static let v1Features = ["stats", "stats-events", "balloon-events", "frame-reporting"]
    /// Listed when the guest's configuration allows the free-memory mode
    /// (`[FreeMemory] Allow=`).
    public static let freeMemoryFeature = "free-memory-reporting"

    public init(
        version: String, protocolVersion: Int = ProtocolVersion.current, features: [String] = InfoReply.v1Features,
        pageSize: UInt64, memoryTotal: UInt64, maxBalloon: UInt64, memAvailableFloor: UInt64, chunkSize: UInt64,
        transparentHugePages: Bool, hugePageAdvice: HugePageAdvice, channel: String, pressureTriggers: [Trigger],
        holderProcesses: Bool, protectedFromOOMKiller: Bool
    ) {
        self.version = version
        self.protocolVersion = protocolVersion
        self.features = features
        self.pageSize = pageSize
        self.memoryTotal = memoryTotal
        self.maxBalloon = maxBalloon
        self.memAvailableFloor = memAvailableFloor
        self.chunkSize = chunkSize
        self.transparentHugePages = transparentHugePages
        self.hugePageAdvice = hugePageAdvice
        self.channel = channel
        self.pressureTriggers = pressureTriggers
        self.holderProcesses = holderProcesses
        self.protectedFromOOMKiller = protectedFromOOMKiller
    }

    public var json: JSON {
        [
            "version": .string(version), "protocol": .int(Int64(protocolVersion)),
            "features": .array(features.map(JSON.string)),
            "page-size": .uint(pageSize), "memory-total": .uint(memoryTotal), "max-balloon": .uint(maxBalloon),
            "mem-available-floor": .uint(memAvailableFloor), "chunk-size": .uint(chunkSize),
            "transparent-huge-pages": .bool(transparentHugePages), "huge-page-advice": .string(hugePageAdvice.rawValue),
            "channel": .string(channel),
            "pressure-triggers": .array(pressureTriggers.map { t in
                ["tier": .string(t.tier.rawValue), "requested": .string(t.requested), "active": .string(t.active),
                 "two-second-fallback": .bool(t.twoSecondFallback)]
            }),
            "holder-processes": .bool(holderProcesses), "protected-from-oom-killer": .bool(protectedFromOOMKiller),
        ]
    }

    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "info reply")
        version = try f.string("version")
        protocolVersion = Int(try f.int64("protocol"))
        features = []
        for item in try f.array("features") {
            guard let s = item.string else { throw f.fail("\"features\" must hold strings, got \(item.serialized())") }
            features.append(s)
        }
        pageSize = try f.uint64("page-size")
        memoryTotal = try f.uint64("memory-total")
        maxBalloon = try f.uint64("max-balloon")
        memAvailableFloor = try f.uint64("mem-available-floor")
        chunkSize = try f.uint64("chunk-size")
        transparentHugePages = try f.bool("transparent-huge-pages")
        hugePageAdvice = try f.enumeration("huge-page-advice", HugePageAdvice.self)
        channel = try f.string("channel")
        pressureTriggers = []
        for item in try f.array("pressure-triggers") {
            let t = try Fields(item, "info reply \"pressure-triggers\"")
            pressureTriggers.append(Trigger(
                tier: try t.enumeration("tier", Trigger.Tier.self), requested: try t.string("requested"),
                active: try t.string("active"), twoSecondFallback: try t.bool("two-second-fallback")))
        }
        holderProcesses = try f.bool("holder-processes")
        protectedFromOOMKiller = try f.bool("protected-from-oom-killer")
    }
}

/// The `set-target` reply.
public struct SetTargetReply: ReplyValue {
    /// The target as the guest took it (rounded down to the page size).
    public var target: UInt64
    /// The target clamped to `max-balloon`.
    public var effectiveTarget: UInt64
    public var actual: UInt64

    public init(target: UInt64, effectiveTarget: UInt64, actual: UInt64) {
        self.target = target
        self.effectiveTarget = effectiveTarget
        self.actual = actual
    }

    public var json: JSON { ["target": .uint(target), "effective-target": .uint(effectiveTarget), "actual": .uint(actual)] }

    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "set-target reply")
        self.init(target: try f.uint64("target"), effectiveTarget: try f.uint64("effective-target"), actual: try f.uint64("actual"))
    }

    /// The balloon is already where the host wants it.
    public var isDone: Bool { actual == effectiveTarget && effectiveTarget == target }
    /// The balloon already stopped at the clamp, short of the target.
    public var isStoppedShort: Bool { effectiveTarget < target && actual == effectiveTarget }
}

/// The `set-stats-interval` reply.
public struct StatsIntervalReply: ReplyValue {
    /// `.zero`: no `STATS` events.
    public var interval: Duration

    public init(interval: Duration) { self.interval = interval }

    public var json: JSON { ["interval-ms": .uint(interval.wholeMilliseconds)] }

    public init(json: JSON) throws(ProtocolError) {
        interval = .milliseconds(exactly: try Fields(json, "set-stats-interval reply").uint64("interval-ms"))
    }
}

/// The `set-frame-reporting` reply.
public struct FrameReportingReply: ReplyValue {
    public var enabled: Bool
    public var pageSize: UInt64
    /// Frames the balloon holds now.
    public var frames: UInt64
    /// This lifetime of the daemon (random, new at every start): `frames-ack`
    /// names it, and a restarted daemon refuses acks meant for its
    /// predecessor. nil from a daemon older than the field.
    public var instance: String?
    /// How long memory whose `FRAMES_INFLATED` was never acknowledged stays
    /// locked after reporting ends, the host goes or the daemon dies: a host
    /// frees such memory only within this time of a sign of life (rule 5).
    public var grace: Duration?

    public init(enabled: Bool, pageSize: UInt64, frames: UInt64, instance: String? = nil, grace: Duration? = nil) {
        self.enabled = enabled
        self.pageSize = pageSize
        self.frames = frames
        self.instance = instance
        self.grace = grace
    }

    public var json: JSON {
        var members: [(String, JSON)] = [("enabled", .bool(enabled)), ("page-size", .uint(pageSize)), ("frames", .uint(frames))]
        if let instance { members.append(("instance", .string(instance))) }
        if let grace { members.append(("grace-ms", .uint(grace.wholeMilliseconds))) }
        return .object(members)
    }

    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "set-frame-reporting reply")
        self.init(enabled: try f.bool("enabled"), pageSize: try f.uint64("page-size"), frames: try f.uint64("frames"),
                  instance: try f.optionalString("instance"), grace: try f.optionalUInt64("grace-ms").map { .milliseconds(exactly: $0) })
    }
}

/// The `set-free-memory-reporting` reply.
public struct FreeMemoryReportingReply: ReplyValue {
    public var enabled: Bool
    /// MemFree the mode leaves to the guest.
    public var cushion: UInt64
    /// Whether cold page cache is reclaimed too (`[FreeMemory] ReclaimColdCache=`).
    public var coldCache: Bool

    public init(enabled: Bool, cushion: UInt64, coldCache: Bool) {
        self.enabled = enabled
        self.cushion = cushion
        self.coldCache = coldCache
    }

    public var json: JSON { ["enabled": .bool(enabled), "cushion": .uint(cushion), "cold-cache": .bool(coldCache)] }

    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "set-free-memory-reporting reply")
        self.init(enabled: try f.bool("enabled"), cushion: try f.uint64("cushion"), coldCache: try f.bool("cold-cache"))
    }
}

/// The `frames-ack` reply.
public struct FramesAckReply: ReplyValue {
    public var acked: UInt64
    public init(acked: UInt64) { self.acked = acked }
    public var json: JSON { ["acked": .uint(acked)] }
    public init(json: JSON) throws(ProtocolError) { acked = try Fields(json, "frames-ack reply").uint64("acked") }
}

/// The `rescan-frames` reply.
public struct RescanFramesReply: ReplyValue {
    /// Frames the kernel moved since they were reported.
    public var moved: UInt64
    public init(moved: UInt64) { self.moved = moved }
    public var json: JSON { ["moved": .uint(moved)] }
    public init(json: JSON) throws(ProtocolError) { moved = try Fields(json, "rescan-frames reply").uint64("moved") }
}

/// The `stats` reply, also the data of `STATS` events.
public struct StatsReply: ReplyValue {
    /// The 16 virtio stats; a counter the guest kernel lacks is absent.
    public var stats: VirtioStats
    /// nil when the guest kernel has no PSI.
    public var pressure: Pressure?
    public var balloonTarget: UInt64
    public var balloonActual: UInt64
    /// Of `balloonActual`, the guest's free memory the free-memory mode holds
    /// (`balloon.free-memory-held`): memory the guest gets back the moment it
    /// needs it, which `available-memory` (the kernel's MemAvailable) does not
    /// count. 0 when the mode is off.
    public var freeMemoryHeld: UInt64
    /// The guest's MemAvailable floor now (`balloon.mem-available-floor`, the
    /// `limits` of `query`), so a host policy follows a reload that changed
    /// it; nil from daemons before it was added.
    public var memAvailableFloor: UInt64?
    /// Page-cache refaults since boot (/proc/vmstat `workingset_refault_file`,
    /// or `workingset_refault` before Linux 5.9): pages read again soon after
    /// reclaim took them, the guest's cache being its working set, which no
    /// virtio stat counts. nil when the kernel has neither, or from daemons
    /// before it was added.
    public var fileRefaults: UInt64?
    /// Wall-clock time of the sample.
    public var timestamp: Timestamp

    public init(
        stats: VirtioStats, pressure: Pressure?, balloonTarget: UInt64, balloonActual: UInt64, freeMemoryHeld: UInt64 = 0,
        memAvailableFloor: UInt64? = nil, fileRefaults: UInt64? = nil, timestamp: Timestamp
    ) {
        self.stats = stats
        self.pressure = pressure
        self.balloonTarget = balloonTarget
        self.balloonActual = balloonActual
        self.freeMemoryHeld = freeMemoryHeld
        self.memAvailableFloor = memAvailableFloor
        self.fileRefaults = fileRefaults
        self.timestamp = timestamp
    }

    public var json: JSON {
        var members: [(String, JSON)] = [
            ("stats", .object(stats.present.map { ($0.stat.name, .uint($0.value)) })),
            ("pressure", pressure.map { p in .object([("some", Self.json(p.some)), ("full", Self.json(p.full))]) } ?? .null),
            ("balloon", .object(
                [("target", .uint(balloonTarget)), ("actual", .uint(balloonActual)), ("free-memory-held", .uint(freeMemoryHeld))]
                    + (memAvailableFloor.map { [("mem-available-floor", JSON.uint($0))] } ?? []))),
        ]
        if let fileRefaults { members.append(("file-refaults", .uint(fileRefaults))) }
        members.append(("timestamp", timestamp.json))
        return .object(members)
    }

    static func json(_ line: PressureLine?) -> JSON {
        guard let line else { return .null }
        return ["avg10": .double(line.avg10), "avg60": .double(line.avg60), "avg300": .double(line.avg300), "total": .uint(line.total)]
    }

    public init(json: JSON) throws(ProtocolError) {
        try self.init(json, context: "stats reply")
    }

    init(_ json: JSON, context: String) throws(ProtocolError) {
        let f = try Fields(json, context)
        let s = try f.object("stats")
        stats = VirtioStats()
        for (name, _) in s.members {
            // A stat a newer guest adds is ignored.
            guard let stat = VirtioStat(name: name) else { continue }
            stats[stat] = try s.uint64(name)
        }
        if let p = try f.optionalObject("pressure") {
            pressure = Pressure(some: try Self.line(p, "some"), full: try Self.line(p, "full"))
        } else {
            pressure = nil
        }
        let balloon = try f.object("balloon")
        balloonTarget = try balloon.uint64("target")
        balloonActual = try balloon.uint64("actual")
        // Absent from daemons before the free-memory mode.
        freeMemoryHeld = try balloon.optionalUInt64("free-memory-held") ?? 0
        memAvailableFloor = try balloon.optionalUInt64("mem-available-floor")
        fileRefaults = try f.optionalUInt64("file-refaults")
        timestamp = try Timestamp(fields: try f.object("timestamp"))
    }

    private static func line(_ p: Fields, _ key: String) throws(ProtocolError) -> PressureLine? {
        guard let l = try p.optionalObject(key) else { return nil }
        return PressureLine(avg10: try l.double("avg10"), avg60: try l.double("avg60"), avg300: try l.double("avg300"), total: try l.uint64("total"))
    }
}

extension Timestamp {
    init(fields t: Fields) throws(ProtocolError) {
        self.init(seconds: try t.int64("seconds"), microseconds: try t.int64("microseconds"))
    }
}

/// A guest `CLOCK_MONOTONIC` time in microseconds, as `DEFLATED` and `query`
/// carry it (comparable only with other times of the same guest boot).
public struct MonotonicTimestamp: Sendable, Equatable, Comparable, Hashable {
    public var microseconds: UInt64
    public init(microseconds: UInt64) { self.microseconds = microseconds }
    public static func < (a: Self, b: Self) -> Bool { a.microseconds < b.microseconds }
    /// `b - a`, or zero if `b` is earlier.
    public func duration(to later: MonotonicTimestamp) -> Duration {
        later.microseconds > microseconds ? .microseconds(Int64(clamping: later.microseconds - microseconds)) : .zero
    }
}

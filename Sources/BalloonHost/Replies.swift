import BalloonProtocol

// Typed views of the replies in docs/protocol.md. Unknown fields are
// ignored (protocol versioning); fields a reply lacks stay nil, except where
// a command cannot be used without them (set-target, query).

/// The `info` reply.
public struct GuestInfo: Sendable, Equatable {
    public var version: String?
    public var protocolVersion: Int64?
    public var features: [String]
    public var pageSize: UInt64?
    public var memoryTotal: UInt64?
    public var maxBalloon: UInt64?
    public var memAvailableFloor: UInt64?
    public var chunkSize: UInt64?
    public var transparentHugePages: Bool?
    public var channel: String?
    /// The reply as received.
    public var raw: JSON

    public init(_ json: JSON) {
        raw = json
        version = json["version"]?.string
        protocolVersion = json["protocol"]?.int64
        features = (json["features"]?.array ?? []).compactMap(\.string)
        pageSize = json["page-size"]?.uint64
        memoryTotal = json["memory-total"]?.uint64
        maxBalloon = json["max-balloon"]?.uint64
        memAvailableFloor = json["mem-available-floor"]?.uint64
        chunkSize = json["chunk-size"]?.uint64
        transparentHugePages = json["transparent-huge-pages"]?.bool
        channel = json["channel"]?.string
    }
}

/// The `set-target` reply.
public struct TargetReply: Sendable, Equatable {
    /// The target as the guest took it (rounded down to the page size).
    public var target: UInt64
    /// The target clamped to `max-balloon`.
    public var effectiveTarget: UInt64
    public var actual: UInt64
    public var raw: JSON

    public init(_ json: JSON, command: String = CommandName.setTarget) throws(HostError) {
        guard let target = json["target"]?.uint64, let actual = json["actual"]?.uint64 else {
            throw .badReply(command: command, detail: "expected \"target\" and \"actual\" in \(json.serialized())")
        }
        self.target = target
        self.actual = actual
        self.effectiveTarget = json["effective-target"]?.uint64 ?? target
        self.raw = json
    }

    /// The balloon is already where the host wants it.
    public var isDone: Bool { actual == effectiveTarget && effectiveTarget == target }
    /// The balloon already stopped at the clamp, short of the target.
    public var isStoppedShort: Bool { effectiveTarget < target && actual == effectiveTarget }
}

/// Why the balloon stops short of its target (`reason` in `query`,
/// `TARGET_UNREACHABLE`).
public struct UnreachableReason: Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var desc: String

    public init(code: String, desc: String) {
        self.code = code
        self.desc = desc
    }

    public init?(_ json: JSON?) {
        guard let json, case .object = json else { return nil }
        code = json["code"]?.string ?? "unknown"
        desc = json["desc"]?.string ?? ""
    }

    public var description: String { desc.isEmpty ? code : "\(code): \(desc)" }

    public static let maxBalloon = "max-balloon"
    public static let memAvailableFloor = "mem-available-floor"
    public static let reserveFailed = "reserve-failed"
}

/// The `query` reply.
public struct BalloonStatus: Sendable, Equatable {
    public var target: UInt64
    public var effectiveTarget: UInt64
    public var actual: UInt64
    /// `idle`, `inflating`, `deflating`, `unreachable` (or a newer state).
    public var state: String
    public var memoryTotal: UInt64?
    public var maxBalloon: UInt64?
    public var memAvailableFloor: UInt64?
    public var chunkSize: UInt64?
    public var reason: UnreachableReason?
    public var raw: JSON

    public init(_ json: JSON) throws(HostError) {
        guard let target = json["target"]?.uint64, let actual = json["actual"]?.uint64 else {
            throw .badReply(command: CommandName.query, detail: "expected \"target\" and \"actual\" in \(json.serialized())")
        }
        self.target = target
        self.actual = actual
        effectiveTarget = json["effective-target"]?.uint64 ?? target
        state = json["state"]?.string ?? "unknown"
        let limits = json["limits"]
        memoryTotal = limits?["memory-total"]?.uint64
        maxBalloon = limits?["max-balloon"]?.uint64
        memAvailableFloor = limits?["mem-available-floor"]?.uint64
        chunkSize = limits?["chunk-size"]?.uint64
        reason = UnreachableReason(json["reason"])
        raw = json
    }
}

/// The virtio balloon statistics (kernel tags 0–15) under QEMU's names.
public struct VirtioStats: Sendable, Equatable {
    public enum Unit: Sendable { case bytes, count }

    /// The 16 names in tag order, with their unit.
    public static let names: [(name: String, unit: Unit)] = [
        ("swap-in", .bytes), ("swap-out", .bytes), ("major-faults", .count), ("minor-faults", .count),
        ("free-memory", .bytes), ("total-memory", .bytes), ("available-memory", .bytes), ("disk-caches", .bytes),
        ("htlb-pgalloc", .count), ("htlb-pgfail", .count), ("oom-kills", .count), ("alloc-stalls", .count),
        ("async-scans", .count), ("direct-scans", .count), ("async-reclaims", .count), ("direct-reclaims", .count),
    ]

    /// name → value; a counter the guest lacks is absent.
    public var values: [String: UInt64]

    public init(_ json: JSON?) {
        var values: [String: UInt64] = [:]
        for (key, value) in json?.object ?? [] {
            if let n = value.uint64 { values[key] = n }
        }
        self.values = values
    }

    public subscript(name: String) -> UInt64? { values[name] }

    public var freeMemory: UInt64? { values["free-memory"] }
    public var totalMemory: UInt64? { values["total-memory"] }
    public var availableMemory: UInt64? { values["available-memory"] }
}

/// One line of /proc/pressure/memory.
public struct PressureLine: Sendable, Equatable {
    public var avg10: Double
    public var avg60: Double
    public var avg300: Double
    /// Microseconds stalled in total.
    public var total: UInt64

    public init?(_ json: JSON?) {
        guard let json, case .object = json else { return nil }
        avg10 = json["avg10"]?.double ?? 0
        avg60 = json["avg60"]?.double ?? 0
        avg300 = json["avg300"]?.double ?? 0
        total = json["total"]?.uint64 ?? 0
    }
}

/// The `stats` reply, also the data of `STATS` events.
public struct GuestStats: Sendable, Equatable {
    public var stats: VirtioStats
    /// nil when the guest kernel has no PSI.
    public var some: PressureLine?
    public var full: PressureLine?
    public var balloonTarget: UInt64?
    public var balloonActual: UInt64?
    public var timestamp: Timestamp?
    public var raw: JSON

    public init(_ json: JSON) {
        raw = json
        stats = VirtioStats(json["stats"])
        some = PressureLine(json["pressure"]?["some"])
        full = PressureLine(json["pressure"]?["full"])
        balloonTarget = json["balloon"]?["target"]?.uint64
        balloonActual = json["balloon"]?["actual"]?.uint64
        timestamp = json["timestamp"].flatMap(Timestamp.init(json:))
    }

    public var hasPressure: Bool { some != nil || full != nil }
}

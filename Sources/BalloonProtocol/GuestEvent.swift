// SPDX-License-Identifier: Apache-2.0
/// `BALLOON_CHANGE`, `TARGET_REACHED` and `TARGET_UNREACHABLE` data.
public struct BalloonProgress: Sendable, Equatable {
    public var actual: UInt64
    public var target: UInt64

    public init(actual: UInt64, target: UInt64) {
        self.actual = actual
        self.target = target
    }
}

/// `DEFLATED` data: the balloon gave memory back because of pressure.
public struct DeflatedEvent: Sendable, Equatable {
    public var bytes: UInt64
    public var reason: DeflateReason
    /// The balloon's size after it.
    public var actual: UInt64
    public var timing: DeflateTiming?

    public init(bytes: UInt64, reason: DeflateReason, actual: UInt64, timing: DeflateTiming?) {
        self.bytes = bytes
        self.reason = reason
        self.actual = actual
        self.timing = timing
    }
}

/// `FRAMES_INFLATED` / `FRAMES_DEFLATED` data. The decoder checks the shape
/// only; whether the ranges may be freed is the host's call (COUNT 0, the
/// page size, RAM bounds: docs/balloonctl.md).
public struct FrameReport: Sendable, Equatable {
    public var seq: UInt64
    public var pageSize: UInt64
    public var ranges: [FrameRange]
    /// Entries of `ranges` on the wire that were not `[PFN, COUNT]` pairs of
    /// non-negative integers: left out of `ranges`, so a host refuses just
    /// them (counted as malformed) and still acts on the rest and
    /// acknowledges `seq`. Never sent; always 0 from balloond.
    public var unreadableRanges: Int

    public init(seq: UInt64, pageSize: UInt64, ranges: [FrameRange], unreadableRanges: Int = 0) {
        self.seq = seq
        self.pageSize = pageSize
        self.ranges = ranges
        self.unreadableRanges = unreadableRanges
    }

    /// Page sizes a host accepts: powers of two from 4 KiB to 1 GiB.
    public static func validPageSize(_ size: UInt64) -> Bool {
        size >= 4096 && size <= 1 << 30 && size & (size - 1) == 0
    }
}

/// Every event of protocol v1 with its typed data.
public enum GuestEvent: Sendable, Equatable {
    case balloonChange(BalloonProgress)
    case targetReached(BalloonProgress)
    case targetUnreachable(BalloonProgress, reason: StopReason)
    case stats(StatsReply)
    case deflated(DeflatedEvent)
    case framesInflated(FrameReport)
    case framesDeflated(FrameReport)

    public enum Name: String, Sendable, CaseIterable {
        case balloonChange = "BALLOON_CHANGE"
        case targetReached = "TARGET_REACHED"
        case targetUnreachable = "TARGET_UNREACHABLE"
        case stats = "STATS"
        case deflated = "DEFLATED"
        case framesInflated = "FRAMES_INFLATED"
        case framesDeflated = "FRAMES_DEFLATED"
    }

    public var name: Name {
        switch self {
        case .balloonChange: .balloonChange
        case .targetReached: .targetReached
        case .targetUnreachable: .targetUnreachable
        case .stats: .stats
        case .deflated: .deflated
        case .framesInflated: .framesInflated
        case .framesDeflated: .framesDeflated
        }
    }

    public var data: JSON {
        switch self {
        case let .balloonChange(p), let .targetReached(p):
            return ["actual": .uint(p.actual), "target": .uint(p.target)]
        case let .targetUnreachable(p, reason):
            return ["actual": .uint(p.actual), "target": .uint(p.target), "reason": reason.json]
        case let .stats(s):
            return s.json
        case let .deflated(d):
            return .object([("bytes", .uint(d.bytes)), ("reason", .string(d.reason.rawValue)), ("actual", .uint(d.actual))]
                + (d.timing?.members ?? []))
        case let .framesInflated(r), let .framesDeflated(r):
            return ["seq": .uint(r.seq), "page-size": .uint(r.pageSize), "ranges": .array(r.ranges.map(\.json))]
        }
    }

    /// The event as sent, stamped with the wall-clock time it was made.
    public func event(at timestamp: Timestamp) -> Event { Event(name.rawValue, data: data, timestamp: timestamp) }

    /// The progress of the balloon events, nil for the others.
    public var progress: BalloonProgress? {
        switch self {
        case let .balloonChange(p), let .targetReached(p), let .targetUnreachable(p, _): p
        default: nil
        }
    }

    /// The report of the `FRAMES_*` events, nil for the others.
    public var frameReport: FrameReport? {
        switch self {
        case let .framesInflated(r), let .framesDeflated(r): r
        default: nil
        }
    }

    /// Decodes an event's data. An unknown name (a newer guest's event)
    /// throws `MalformedMessage` naming it; hosts ignore such events.
    public init(_ event: Event) throws(ProtocolError) {
        guard let name = Name(rawValue: event.name) else {
            throw ProtocolError(.malformedMessage, "unknown event \"\(event.name)\"")
        }
        try self.init(name, data: event.data)
    }

    public init(_ name: Name, data: JSON) throws(ProtocolError) {
        let f = try Fields(data, name.rawValue)
        switch name {
        case .balloonChange, .targetReached, .targetUnreachable:
            let p = BalloonProgress(actual: try f.uint64("actual"), target: try f.uint64("target"))
            switch name {
            case .balloonChange: self = .balloonChange(p)
            case .targetReached: self = .targetReached(p)
            default: self = .targetUnreachable(p, reason: try StopReason(fields: try f.object("reason")))
            }
        case .deflated:
            self = .deflated(DeflatedEvent(
                bytes: try f.uint64("bytes"), reason: try f.enumeration("reason", DeflateReason.self),
                actual: try f.uint64("actual"), timing: try DeflateTiming(fields: f)))
        case .framesInflated, .framesDeflated:
            let items = try f.array("ranges")
            let ranges = items.compactMap(FrameRange.init(json:))
            let report = FrameReport(
                seq: try f.uint64("seq"), pageSize: try f.uint64("page-size"), ranges: ranges,
                unreadableRanges: items.count - ranges.count)
            self = name == .framesInflated ? .framesInflated(report) : .framesDeflated(report)
        case .stats:
            self = .stats(try StatsReply(data, context: name.rawValue))
        }
    }
}

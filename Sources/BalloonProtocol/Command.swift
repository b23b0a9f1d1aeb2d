// SPDX-License-Identifier: Apache-2.0
/// Every command of protocol v1 (docs/protocol.md), with its arguments
/// checked and typed, plus `serve-status`, which only `balloonctl serve`
/// answers on its control socket (docs/balloonctl.md).
public enum Command: Sendable, Equatable {
    /// Answered with `id` itself, preceded by 0xFF.
    case sync(id: JSON)
    case info
    /// The balloon size in bytes (the daemon rounds it down to the page size).
    case setTarget(UInt64)
    case query
    case stats
    /// `.zero` stops the `STATS` events.
    case setStatsInterval(Duration)
    case setFrameReporting(enabled: Bool)
    /// Every `FRAMES_*` event up to and including `seq` was acted upon.
    /// `instance`: the daemon lifetime that sent them (its
    /// `set-frame-reporting` reply); another lifetime refuses the ack.
    case framesAck(seq: UInt64, instance: String? = nil)
    case rescanFrames
    /// The free-memory mode (docs/free-memory.md): the balloon holds the
    /// guest's free memory above a cushion; needs frame reporting on.
    case setFreeMemoryReporting(enabled: Bool)
    /// `balloonctl serve`'s own counters; the guest does not know it.
    case serveStatus

    public enum Name: String, Sendable, CaseIterable {
        case sync, info
        case setTarget = "set-target"
        case query, stats
        case setStatsInterval = "set-stats-interval"
        case setFrameReporting = "set-frame-reporting"
        case framesAck = "frames-ack"
        case rescanFrames = "rescan-frames"
        case setFreeMemoryReporting = "set-free-memory-reporting"
        case serveStatus = "serve-status"

        /// The commands balloond answers.
        public static let guest: [Name] = allCases.filter { $0 != .serveStatus }
    }

    /// Who decodes: the guest daemon refuses serve's extensions as unknown.
    public enum Scope: Sendable {
        case guest
        case serveControl

        public var names: [Name] { self == .guest ? Name.guest : Name.allCases }
    }

    /// `interval-ms` bounds: 0 (off) or 100 ms to a day.
    public static let statsIntervalRange: ClosedRange<Duration> = .milliseconds(100) ... .seconds(86_400)

    public var name: Name {
        switch self {
        case .sync: .sync
        case .info: .info
        case .setTarget: .setTarget
        case .query: .query
        case .stats: .stats
        case .setStatsInterval: .setStatsInterval
        case .setFrameReporting: .setFrameReporting
        case .framesAck: .framesAck
        case .rescanFrames: .rescanFrames
        case .setFreeMemoryReporting: .setFreeMemoryReporting
        case .serveStatus: .serveStatus
        }
    }

    /// The `arguments` object of the request.
    public var arguments: JSON {
        switch self {
        case let .sync(id): ["id": id]
        case let .setTarget(bytes): ["target": .uint(bytes)]
        case let .setStatsInterval(interval): ["interval-ms": .uint(interval.wholeMilliseconds)]
        case let .setFrameReporting(enabled), let .setFreeMemoryReporting(enabled): ["enabled": .bool(enabled)]
        case let .framesAck(seq, instance):
            instance.map { ["seq": .uint(seq), "instance": .string($0)] } ?? ["seq": .uint(seq)]
        case .info, .query, .stats, .rescanFrames, .serveStatus: .object([])
        }
    }

    public func request(id: JSON?) -> Request { Request(name.rawValue, arguments: arguments, id: id) }

    /// The error for a command nobody here knows.
    public static func notFound(_ name: String, scope: Scope = .guest) -> ProtocolError {
        ProtocolError(.commandNotFound, "no command \"\(name)\" (known: \(scope.names.map(\.rawValue).joined(separator: ", ")))")
    }

    /// Checks a request as the daemon always has: the command must exist (in
    /// `scope`), unknown arguments are refused, and each argument must be
    /// present, of its type and in range (`InvalidParameter` naming it).
    public init(_ request: Request, scope: Scope = .guest) throws(ProtocolError) {
        guard let name = Name(rawValue: request.execute), scope.names.contains(name) else {
            throw Self.notFound(request.execute, scope: scope)
        }
        let args = try Fields(request.arguments, name.rawValue, noun: "argument", errorClass: .invalidParameter)
        switch name {
        case .sync:
            try args.allowOnly(["id"])
            self = .sync(id: try args.required("id"))
        case .info:
            try args.allowOnly([])
            self = .info
        case .setTarget:
            try args.allowOnly(["target"])
            self = .setTarget(try args.uint64("target"))
        case .query:
            try args.allowOnly([])
            self = .query
        case .stats:
            try args.allowOnly([])
            self = .stats
        case .setStatsInterval:
            try args.allowOnly(["interval-ms"])
            let ms = try args.uint64("interval-ms")
            let range = Self.statsIntervalRange
            guard ms == 0 || (ms >= range.lowerBound.wholeMilliseconds && ms <= range.upperBound.wholeMilliseconds) else {
                throw args.fail("\"interval-ms\" must be 0 (off) or between \(range.lowerBound.wholeMilliseconds) and \(range.upperBound.wholeMilliseconds), got \(ms)")
            }
            self = .setStatsInterval(.milliseconds(exactly: ms))
        case .setFrameReporting:
            try args.allowOnly(["enabled"])
            self = .setFrameReporting(enabled: try args.bool("enabled"))
        case .framesAck:
            try args.allowOnly(["seq", "instance"])
            self = .framesAck(seq: try args.uint64("seq"), instance: try args.optionalString("instance"))
        case .rescanFrames:
            try args.allowOnly([])
            self = .rescanFrames
        case .setFreeMemoryReporting:
            try args.allowOnly(["enabled"])
            self = .setFreeMemoryReporting(enabled: try args.bool("enabled"))
        case .serveStatus:
            try args.allowOnly([])
            self = .serveStatus
        }
    }
}

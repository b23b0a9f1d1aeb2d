// SPDX-License-Identifier: Apache-2.0
import BalloonStats
import BalloonTestSupport
import Testing

@testable import BalloonProtocol

/// One line on the wire and back: encode, frame as a line, decode.
func overTheWire(_ message: Message) throws -> Message {
    let line = message.encoded()
    #expect(line.last == 0x0A)
    return try Message.decode(line.dropLast())
}

func overTheWire<R: ReplyValue>(_ reply: R) throws -> R {
    guard case let .response(r) = try overTheWire(.response(Response(id: 9, reply: reply))), case let .success(value) = r.result else {
        throw ProtocolError(.malformedMessage, "not a successful response")
    }
    #expect(r.id == 9)
    return try R(json: value)
}

func decodeError(_ body: () throws(ProtocolError) -> Void) -> ProtocolError? {
    do { try body() } catch { return error }
    return nil
}

@Suite struct CommandTests {
    static let examples: [Command] = [
        .sync(id: 4_503_599_627_370_495), .sync(id: ["nested": [1, "two", nil]]), .info, .setTarget(0), .setTarget(1 << 30),
        .setTarget(.max), .query, .stats, .setStatsInterval(.zero), .setStatsInterval(.milliseconds(100)),
        .setStatsInterval(.seconds(86_400)), .setFrameReporting(enabled: true), .setFrameReporting(enabled: false),
        .framesAck(seq: 0), .framesAck(seq: .max), .framesAck(seq: 7, instance: "3f2a9c"), .rescanFrames, .serveStatus,
        .setFreeMemoryReporting(enabled: true), .setFreeMemoryReporting(enabled: false),
    ]

    @Test func examplesCoverEveryCommand() {
        #expect(Set(Self.examples.map(\.name)) == Set(Command.Name.allCases))
    }

    @Test(arguments: examples)
    func roundTrip(_ command: Command) throws {
        guard case let .request(request) = try overTheWire(.request(command.request(id: "r1"))) else {
            Issue.record("not a request")
            return
        }
        #expect(request.execute == command.name.rawValue)
        #expect(request.id == "r1")
        #expect(try Command(request, scope: .serveControl) == command)
        if command.name != .serveStatus { #expect(try Command(request) == command) }
    }

    @Test func argumentlessCommandsOmitArguments() {
        #expect(Message.request(Command.query.request(id: nil)).json.serialized() == #"{"execute":"query"}"#)
        #expect(Message.request(Command.setTarget(4096).request(id: 3)).json.serialized()
            == #"{"execute":"set-target","arguments":{"target":4096},"id":3}"#)
        #expect(Command.setStatsInterval(.milliseconds(1500)).arguments == ["interval-ms": 1500])
    }

    @Test func randomArgumentsRoundTrip() throws {
        var rng = SeededRandom(seed: 0x5E7_7A26E7)
        for _ in 0..<200 {
            let bytes = UInt64.random(in: 0...UInt64.max, using: &rng)
            let ms = UInt64.random(in: 100...86_400_000, using: &rng)
            for command in [Command.setTarget(bytes), .framesAck(seq: bytes), .setStatsInterval(.milliseconds(Int64(ms)))] {
                #expect(try Command(command.request(id: nil)) == command)
            }
        }
    }

    /// The texts the daemon has always given (docs/protocol.md: `desc` names the problem).
    @Test func errorsNameTheProblem() {
        func error(_ execute: String, _ args: JSON = .object([]), scope: Command.Scope = .guest) -> ProtocolError? {
            decodeError { () throws(ProtocolError) in _ = try Command(Request(execute, arguments: args), scope: scope) }
        }
        let known = "sync, info, set-target, query, stats, set-stats-interval, set-frame-reporting, frames-ack, rescan-frames, set-free-memory-reporting"
        #expect(error("nope") == ProtocolError(.commandNotFound, "no command \"nope\" (known: \(known))"))
        #expect(error("serve-status") == ProtocolError(.commandNotFound, "no command \"serve-status\" (known: \(known))"))
        #expect(error("nope", scope: .serveControl) == ProtocolError(.commandNotFound, "no command \"nope\" (known: \(known), serve-status)"))
        #expect(error("sync") == ProtocolError(.invalidParameter, "sync: missing argument \"id\""))
        #expect(error("info", ["x": 1]) == ProtocolError(.invalidParameter, "info: unknown argument \"x\" (accepted: none)"))
        #expect(error("set-target", ["tagret": 1]) == ProtocolError(.invalidParameter, "set-target: unknown argument \"tagret\" (accepted: target)"))
        #expect(error("set-target") == ProtocolError(.invalidParameter, "set-target: missing argument \"target\""))
        #expect(error("set-target", ["target": -1]) == ProtocolError(.invalidParameter, "set-target: \"target\" must be a non-negative integer, got -1"))
        #expect(error("set-target", ["target": "1G"]) == ProtocolError(.invalidParameter, "set-target: \"target\" must be a non-negative integer, got \"1G\""))
        #expect(error("set-target", ["target": 1.5]) != nil)
        for ms: Int64 in [1, 99, 86_400_001] {
            #expect(error("set-stats-interval", ["interval-ms": .int(ms)]) == ProtocolError(
                .invalidParameter, "set-stats-interval: \"interval-ms\" must be 0 (off) or between 100 and 86400000, got \(ms)"))
        }
        #expect(error("set-stats-interval", ["interval-ms": 0]) == nil)
        #expect(error("set-frame-reporting") == ProtocolError(.invalidParameter, "set-frame-reporting: missing argument \"enabled\""))
        #expect(error("set-frame-reporting", ["enabled": "yes"]) == ProtocolError(.invalidParameter, "set-frame-reporting: \"enabled\" must be true or false"))
        #expect(error("frames-ack", ["seq": nil]) == ProtocolError(.invalidParameter, "frames-ack: \"seq\" must be a non-negative integer, got null"))
        #expect(error("rescan-frames", ["all": true]) == ProtocolError(.invalidParameter, "rescan-frames: unknown argument \"all\" (accepted: none)"))
        #expect(error("sync", ["id": 1, "x": 2]) == ProtocolError(.invalidParameter, "sync: unknown argument \"x\" (accepted: id)"))
    }
}

@Suite struct ReplyTests {
    static let info = InfoReply(
        version: "0.1.0", pageSize: 4096, memoryTotal: 8_331_440_128, maxBalloon: 6_665_152_102, memAvailableFloor: 1 << 28,
        chunkSize: 1 << 26, transparentHugePages: true, hugePageAdvice: .advise, channel: "unix:/run/balloond.sock",
        pressureTriggers: [.init(tier: .light, requested: "some 20ms 500ms", active: "some 80ms 2000ms", twoSecondFallback: true)],
        holderProcesses: true, protectedFromOOMKiller: false)

    static func stats(_ rng: inout SeededRandom, psi: Bool) -> StatsReply {
        var stats = VirtioStats()
        for stat in VirtioStat.allCases where Bool.random(using: &rng) { stats[stat] = rng.next() }
        let line = PressureLine(avg10: 1.25, avg60: 0.5, avg300: 0, total: rng.next())
        return StatsReply(
            stats: stats, pressure: psi ? Pressure(some: line, full: nil) : nil, balloonTarget: rng.next(), balloonActual: rng.next(),
            fileRefaults: Bool.random(using: &rng) ? rng.next() : nil, timestamp: Timestamp(seconds: 1_795_000_000, microseconds: 123_456))
    }

    static func query(reason: StopReason?, last: QueryReply.Pressure.LastDeflate?) -> QueryReply {
        QueryReply(
            target: 1 << 30, effectiveTarget: 1 << 29, actual: 1 << 28, state: reason == nil ? .inflating : .unreachable,
            limits: .init(memoryTotal: 1 << 33, maxBalloon: 1 << 29, memAvailableFloor: 1 << 28, chunkSize: 1 << 26), reason: reason,
            pressure: .init(state: last == nil ? .calm : .backoff, ceiling: last.map { _ in 1 << 27 }, quietFor: last.map { _ in .milliseconds(29_500) },
                deflatedTotal: 1 << 26, lastDeflate: last, regrowthReclaimedTotal: last.map { _ in 3 << 25 }))
    }

    @Test func everyReplyRoundTrips() throws {
        #expect(try overTheWire(Self.info) == Self.info)
        for reply in [SetTargetReply(target: 1 << 30, effectiveTarget: 1 << 29, actual: 0), .init(target: .max, effectiveTarget: .max, actual: .max)] {
            #expect(try overTheWire(reply) == reply)
        }
        let timing = DeflateTiming(signalAt: .init(microseconds: 10), firstReturnedAt: nil, deflatedAt: .init(microseconds: 99))
        for (reason, last) in [
            (nil, nil),
            (StopReason(code: .maxBalloon, desc: "the target exceeds the maximum balloon"), QueryReply.Pressure.LastDeflate(bytes: 1 << 26, reason: .psiHeavy, ago: .milliseconds(1500), timing: nil)),
            (StopReason(code: .pressure, desc: "pressure"), .init(bytes: 4096, reason: .oomKill, ago: .zero, timing: timing)),
        ] {
            let q = Self.query(reason: reason, last: last)
            #expect(try overTheWire(q) == q)
        }
        var rng = SeededRandom(seed: 0x57A75)
        for i in 0..<50 {
            let s = Self.stats(&rng, psi: i % 2 == 0)
            #expect(try overTheWire(s) == s)
        }
        for interval in [Duration.zero, .milliseconds(100), .seconds(86_400)] {
            #expect(try overTheWire(StatsIntervalReply(interval: interval)) == StatsIntervalReply(interval: interval))
        }
        #expect(try overTheWire(FrameReportingReply(enabled: true, pageSize: 4096, frames: 262_144)) == FrameReportingReply(enabled: true, pageSize: 4096, frames: 262_144))
        let named = FrameReportingReply(enabled: true, pageSize: 4096, frames: 1, instance: "5f0c9a1e27b84d63a0e1f4c2b9d87a10", grace: .seconds(5))
        #expect(try overTheWire(named) == named)
        #expect(named.json.serialized().contains(#""grace-ms":5000"#))
        #expect(try overTheWire(FramesAckReply(acked: 17)) == FramesAckReply(acked: 17))
        #expect(try overTheWire(RescanFramesReply(moved: 3)) == RescanFramesReply(moved: 3))
        var status = ServeStatus()
        #expect(try overTheWire(status) == status)
        status.guestConnected = true
        status.lastError = "the guest closed the connection"
        status.desiredTarget = 1 << 30
        status.memoryBackend = "/dev/shm/vm1"
        status.refused.overlap = 2
        status.controlClients = 3
        #expect(try overTheWire(status) == status)
    }

    @Test func statsKeepsTagOrderAndLeavesAbsentOut() throws {
        var stats = VirtioStats()
        stats[.directReclaims] = 1
        stats[.swapIn] = 2
        let reply = StatsReply(stats: stats, pressure: nil, balloonTarget: 0, balloonActual: 0, timestamp: .init(seconds: 1, microseconds: 2))
        #expect(reply.json.serialized()
            == #"{"stats":{"swap-in":2,"direct-reclaims":1},"pressure":null,"balloon":{"target":0,"actual":0,"free-memory-held":0},"timestamp":{"seconds":1,"microseconds":2}}"#)
    }

    @Test func newerFieldsAreIgnored() throws {
        var json = SetTargetReply(target: 1, effectiveTarget: 1, actual: 0).json
        if case var .object(members) = json { members.append(("added-in-v2", true)); json = .object(members) }
        #expect(try SetTargetReply(json: json) == SetTargetReply(target: 1, effectiveTarget: 1, actual: 0))
        let stats: JSON = ["stats": ["free-memory": 1, "stat-of-the-future": 2], "pressure": nil, "balloon": ["target": 0, "actual": 0],
            "timestamp": ["seconds": 0, "microseconds": 0]]
        #expect(try StatsReply(json: stats).stats[.freeMemory] == 1)
    }

    @Test func errorsNameTheField() {
        func error<R: ReplyValue>(_: R.Type, _ json: JSON) -> ProtocolError? {
            decodeError { () throws(ProtocolError) in _ = try R(json: json) }
        }
        #expect(error(SetTargetReply.self, ["target": 1, "actual": 0])
            == ProtocolError(.malformedMessage, "set-target reply: missing field \"effective-target\""))
        #expect(error(SetTargetReply.self, [1]) == ProtocolError(.malformedMessage, "set-target reply: expected an object, got [1]"))
        var q = Self.query(reason: nil, last: nil).json
        q = .object(q.object!.map { $0.0 == "state" ? ("state", "floating") : $0 })
        #expect(error(QueryReply.self, q)
            == ProtocolError(.malformedMessage, "query reply: \"state\" must be one of idle, inflating, deflating, unreachable, got \"floating\""))
        q = .object(Self.query(reason: nil, last: nil).json.object!.map { $0.0 == "limits" ? ("limits", ["memory-total": 1]) : $0 })
        #expect(error(QueryReply.self, q)?.desc.hasPrefix("query reply \"limits\": missing field") == true)
        #expect(error(InfoReply.self, .object(Self.info.json.object!.filter { $0.0 != "page-size" }))
            == ProtocolError(.malformedMessage, "info reply: missing field \"page-size\""))
        #expect(error(StatsIntervalReply.self, ["interval-ms": -5])
            == ProtocolError(.malformedMessage, "set-stats-interval reply: \"interval-ms\" must be a non-negative integer, got -5"))
        #expect(error(ServeStatus.self, [:]) == ProtocolError(.malformedMessage, "serve-status reply: missing field \"guest-connected\""))
    }
}

@Suite struct GuestEventTests {
    static func examples() -> [GuestEvent] {
        var rng = SeededRandom(seed: 0xE7E47)
        let timing = DeflateTiming(signalAt: .init(microseconds: 1_000), firstReturnedAt: .init(microseconds: 9_000), deflatedAt: .init(microseconds: 20_000))
        return [
            .balloonChange(.init(actual: 1 << 26, target: 1 << 30)),
            .targetReached(.init(actual: 1 << 30, target: 1 << 30)),
            .targetUnreachable(.init(actual: 1 << 29, target: 1 << 30), reason: .init(code: .memAvailableFloor, desc: "MemAvailable is near the floor")),
            .stats(ReplyTests.stats(&rng, psi: true)),
            .deflated(.init(bytes: 1 << 26, reason: .psiLight, actual: 0, timing: timing)),
            .deflated(.init(bytes: 1 << 26, reason: .holderKilled, actual: 0, timing: nil)),
            .framesInflated(.init(seq: 1, pageSize: 4096, ranges: [.init(pfn: 0x10_0000, count: 16_384), .init(pfn: 1, count: 0)])),
            .framesDeflated(.init(seq: .max, pageSize: 1 << 21, ranges: [])),
        ]
    }

    @Test func examplesCoverEveryEvent() {
        #expect(Set(Self.examples().map(\.name)) == Set(GuestEvent.Name.allCases))
    }

    @Test func everyEventRoundTrips() throws {
        for example in Self.examples() {
            let ts = Timestamp(seconds: 1_795_000_000, microseconds: 42)
            guard case let .event(event) = try overTheWire(.event(example.event(at: ts))) else {
                Issue.record("not an event")
                continue
            }
            #expect(event.name == example.name.rawValue)
            #expect(event.timestamp == ts)
            #expect(try GuestEvent(event) == example)
        }
    }

    @Test func deflatedTimesAreInDocumentedOrder() {
        let timing = DeflateTiming(signalAt: .init(microseconds: 1), firstReturnedAt: nil, deflatedAt: .init(microseconds: 3))
        #expect(GuestEvent.deflated(.init(bytes: 4096, reason: .oomKill, actual: 0, timing: timing)).data.serialized()
            == #"{"bytes":4096,"reason":"oom-kill","actual":0,"signal-at":1,"deflated-at":3}"#)
        #expect(timing.signalAt.duration(to: timing.deflatedAt) == .microseconds(2))
        #expect(timing.deflatedAt.duration(to: timing.signalAt) == .zero)
    }

    /// An untrusted guest's bad ranges are set aside, not fatal: the host
    /// refuses just them and still acknowledges the report.
    @Test func unreadableRangesAreCounted() throws {
        let event = try GuestEvent(.framesInflated, data: ["seq": 4, "page-size": 4096, "ranges": [["x", 1], [1, 0], [1], 7, [2, 1], [-1, 1]]])
        #expect(event == .framesInflated(FrameReport(seq: 4, pageSize: 4096, ranges: [.init(pfn: 1, count: 0), .init(pfn: 2, count: 1)], unreadableRanges: 4)))
    }

    @Test func errorsNameTheProblem() {
        func error(_ name: String, _ data: JSON) -> ProtocolError? {
            decodeError { () throws(ProtocolError) in _ = try GuestEvent(Event(name, data: data, timestamp: .init(seconds: 0, microseconds: 0))) }
        }
        #expect(error("SOMETHING_NEW", [:]) == ProtocolError(.malformedMessage, "unknown event \"SOMETHING_NEW\""))
        #expect(error("BALLOON_CHANGE", ["actual": 1]) == ProtocolError(.malformedMessage, "BALLOON_CHANGE: missing field \"target\""))
        #expect(error("TARGET_UNREACHABLE", ["actual": 1, "target": 2, "reason": ["code": "bored", "desc": ""]])
            == ProtocolError(.malformedMessage,
                "TARGET_UNREACHABLE \"reason\": \"code\" must be one of max-balloon, mem-available-floor, reserve-failed, pressure, got \"bored\""))
        #expect(error("FRAMES_INFLATED", ["seq": 1, "page-size": 4096, "ranges": 7])
            == ProtocolError(.malformedMessage, "FRAMES_INFLATED: \"ranges\" must be an array, got 7"))
        #expect(error("FRAMES_DEFLATED", ["page-size": 4096, "ranges": []]) == ProtocolError(.malformedMessage, "FRAMES_DEFLATED: missing field \"seq\""))
        #expect(error("DEFLATED", ["bytes": 1, "reason": "psi-mild", "actual": 0])?.desc.hasPrefix("DEFLATED: \"reason\" must be one of psi-light") == true)
        #expect(error("STATS", nil) == ProtocolError(.malformedMessage, "STATS: expected an object, got null"))
    }
}

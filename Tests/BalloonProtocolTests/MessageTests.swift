// SPDX-License-Identifier: Apache-2.0
import Testing
import BalloonProtocol

private func decode(_ text: String) throws(ProtocolError) -> Message {
    try Message.decode(Array(text.utf8))
}

private func decodeError(_ text: String) -> ProtocolError? {
    do {
        _ = try decode(text)
        return nil
    } catch {
        return error
    }
}

@Suite("Messages")
struct MessageDecodeTests {
    // MARK: Requests

    @Test func requestWithArgumentsAndId() throws {
        let m = try decode(#"{"execute":"set-target","arguments":{"target":1073741824},"id":7}"#)
        guard case let .request(r) = m else { Issue.record("not a request: \(m)"); return }
        #expect(r.execute == "set-target")
        #expect(r.arguments == ["target": 1_073_741_824])
        #expect(r.id == 7)
    }

    @Test func requestWithoutArgumentsOrId() throws {
        let m = try decode(#"{"execute":"query"}"#)
        #expect(m == .request(Request("query")))
        guard case let .request(r) = m else { return }
        #expect(r.id == nil)
        #expect(r.arguments == .object([]))
    }

    @Test("an id of every JSON type is kept as sent", arguments: [
        #"7"#, #"-1"#, #"18446744073709551615"#, #"1.5"#, #""abc""#, #"null"#, #"true"#, #"false"#,
        #"[1,"x",null]"#, #"{"n":1,"s":[{}]}"#,
    ])
    func idOfEveryType(idText: String) throws {
        let id = try JSON.parse(idText)
        let m = try decode(#"{"execute":"info","id":"# + idText + "}")
        #expect(m == .request(Request("info", id: id)))
        // The reply echoes it unchanged, also in its text.
        let reply = Message.response(Response(id: id, result: .success(.object([]))))
        let line = String(decoding: reply.encoded(), as: UTF8.self)
        #expect(line == #"{"return":{},"id":"# + id.serialized() + "}\n")
        #expect(try Message.decode(reply.encoded().dropLast()) == reply)
    }

    @Test func nullIdIsDistinctFromMissingId() throws {
        guard case let .request(withNull) = try decode(#"{"execute":"info","id":null}"#),
              case let .request(without) = try decode(#"{"execute":"info"}"#)
        else { Issue.record("not requests"); return }
        #expect(withNull.id == .some(.null))
        #expect(without.id == nil)
        #expect(Message.request(withNull).json["id"] == .null)
        #expect(Message.request(without).json["id"] == nil)
    }

    @Test func requestEncodingOmitsEmptyArguments() {
        #expect(Message.request(Request("query", id: 1)).json.serialized() == #"{"execute":"query","id":1}"#)
        #expect(Message.request(Request("set-target", arguments: ["target": 0])).json.serialized()
            == #"{"execute":"set-target","arguments":{"target":0}}"#)
    }

    // MARK: Responses

    @Test func responseWithReturn() throws {
        let m = try decode(#"{"return":{"target":1,"actual":0},"id":"a"}"#)
        #expect(m == .response(Response(id: "a", result: .success(["target": 1, "actual": 0]))))
        #expect(try decode(#"{"return":5}"#) == .response(Response(id: nil, result: .success(5))))
    }

    @Test("error responses keep their class", arguments: ErrorClass.allCases)
    func responseWithError(cls: ErrorClass) throws {
        let m = try decode(#"{"error":{"class":""# + cls.rawValue + #"","desc":"it broke"},"id":3}"#)
        #expect(m == .response(Response(id: 3, result: .failure(ProtocolError(cls, "it broke")))))
        // And the round trip through the wire form.
        #expect(try Message.decode(m.encoded()) == m)
    }

    @Test func errorResponseWithUnknownClassOrNoDesc() throws {
        let m = try decode(#"{"error":{"class":"SomethingNew"}}"#)
        guard case let .response(r) = m, case let .failure(e) = r.result else { Issue.record("\(m)"); return }
        #expect(e.errorClass == .genericError)
        #expect(!e.desc.isEmpty)
    }

    @Test func errorResponseEncoding() {
        let m = Message.response(Response(id: nil, result: .failure(ProtocolError(.lineTooLong, "line exceeded 65536 bytes"))))
        #expect(String(decoding: m.encoded(), as: UTF8.self)
            == #"{"error":{"class":"LineTooLong","desc":"line exceeded 65536 bytes"}}"# + "\n")
    }

    // MARK: Events

    @Test func eventWithTimestamp() throws {
        let m = try decode(#"{"event":"BALLOON_CHANGE","data":{"actual":1,"target":2},"timestamp":{"seconds":1795000000,"microseconds":123456}}"#)
        #expect(m == .event(Event(GuestEvent.Name.balloonChange.rawValue, data: ["actual": 1, "target": 2],
                                  timestamp: Timestamp(seconds: 1_795_000_000, microseconds: 123_456))))
        #expect(try Message.decode(m.encoded()) == m)
        #expect(m.json.serialized() == #"{"event":"BALLOON_CHANGE","data":{"actual":1,"target":2},"timestamp":{"seconds":1795000000,"microseconds":123456}}"#)
    }

    @Test func eventWithoutDataOrTimestamp() throws {
        let m = try decode(#"{"event":"STATS"}"#)
        guard case let .event(e) = m else { Issue.record("\(m)"); return }
        #expect(e.name == "STATS")
        #expect(e.data == .null)
    }

    @Test func timestampFromJSON() {
        #expect(Timestamp(json: ["seconds": 1, "microseconds": 2]) == Timestamp(seconds: 1, microseconds: 2))
        #expect(Timestamp(json: ["seconds": 1]) == nil)
        #expect(Timestamp(json: ["seconds": "1", "microseconds": 2]) == nil)
    }

    // MARK: Malformed lines map to the documented classes

    @Test("malformed lines are MalformedMessage", arguments: [
        "not json",
        "{",
        "{\"execute\":\"x\"} trailing",
        "",
        "[1,2]",
        "\"execute\"",
        "42",
        "null",
        "{}",
        "{\"id\":1}",
        "{\"arguments\":{}}",
        "{\"execute\":1}",
        "{\"execute\":null}",
        "{\"execute\":[\"info\"]}",
        "{\"execute\":{}}",
        "{\"event\":5}",
        String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
    ])
    func malformed(text: String) {
        let e = decodeError(text)
        #expect(e?.errorClass == .malformedMessage, "\(text.debugDescription) → \(String(describing: e))")
        #expect(e?.desc.isEmpty == false)
    }

    @Test func malformedJSONDescribesWhere() {
        let e = decodeError("{\"execute\":}")
        #expect(e?.errorClass == .malformedMessage)
        #expect(e?.desc.contains("byte 11") == true, "\(String(describing: e))")
    }

    @Test func invalidUTF8IsMalformed() {
        do {
            _ = try Message.decode([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D] as [UInt8])
            Issue.record("accepted invalid UTF-8")
        } catch {
            #expect(error.errorClass == .malformedMessage)
        }
    }

    @Test("non-object arguments are InvalidParameter", arguments: [
        "[]", "[1]", "1", "\"target\"", "true", "null",
    ])
    func nonObjectArguments(args: String) {
        let e = decodeError(#"{"execute":"set-target","arguments":"# + args + #","id":1}"#)
        #expect(e?.errorClass == .invalidParameter)
        #expect(e?.desc.contains("arguments") == true)
    }

    // MARK: Wire form

    @Test func encodedEndsWithExactlyOneNewline() throws {
        let nasty = "line1\nline2\r\n\u{2028}\u{0}end\n"
        let messages: [Message] = [
            .request(Request("sync", arguments: ["id": .string(nasty)], id: .string(nasty))),
            .response(Response(id: .string(nasty), result: .success(.string(nasty)))),
            .response(Response(id: nil, result: .failure(ProtocolError(.genericError, nasty)))),
            .event(Event(nasty, data: [nasty: .array([.string(nasty)])], timestamp: Timestamp(seconds: 1, microseconds: 2))),
        ]
        for m in messages {
            let wire = m.encoded()
            #expect(wire.last == 0x0A)
            #expect(wire.filter { $0 == 0x0A }.count == 1, "\(String(decoding: wire, as: UTF8.self))")
            #expect(!wire.contains(0x0D))
            #expect(!wire.contains(0xFF))
            // It survives framing and decoding unchanged.
            var framer = LineFramer()
            let items = framer.feed(wire)
            #expect(items.count == 1)
            if case let .line(line) = items.first {
                #expect(try Message.decode(line) == m)
            } else {
                Issue.record("framer did not deliver one line: \(items)")
            }
        }
    }

    @Test func protocolErrorDescription() {
        #expect(ProtocolError(.commandNotFound, "no command \"x\"").description == #"CommandNotFound: no command "x""#)
        #expect(ErrorClass.allCases.map(\.rawValue) == ["MalformedMessage", "LineTooLong", "CommandNotFound", "InvalidParameter", "GenericError", "StaleInstance"])
    }

    @Test func namesMatchTheSpec() {
        #expect(ProtocolVersion.current == 1)
        #expect(Command.Name.guest.map(\.rawValue) == ["sync", "info", "set-target", "query", "stats", "set-stats-interval",
                                                        "set-frame-reporting", "frames-ack", "rescan-frames", "set-free-memory-reporting"])
        #expect(GuestEvent.Name.allCases.map(\.rawValue).sorted()
            == ["BALLOON_CHANGE", "DEFLATED", "FRAMES_DEFLATED", "FRAMES_INFLATED", "STATS", "TARGET_REACHED", "TARGET_UNREACHABLE"])
    }
}

@Suite("Command argument values")
struct CommandArgumentValueTests {
    private func setTarget(_ value: JSON) throws(ProtocolError) -> Command {
        try Command(Request("set-target", arguments: ["target": value]))
    }

    @Test func integralValuesAreAccepted() throws {
        #expect(try setTarget(0) == .setTarget(0))
        #expect(try setTarget(.uint(UInt64.max)) == .setTarget(UInt64.max))
        #expect(try setTarget(1e3) == .setTarget(1000), "an integral float is accepted")
        #expect(try setTarget(1e9) == .setTarget(1_000_000_000))
        let fromWire = try Message.decode(Array(#"{"execute":"set-target","arguments":{"target":1E3}}"#.utf8))
        guard case let .request(r) = fromWire else { Issue.record("not a request: \(fromWire)"); return }
        #expect(try Command(r) == .setTarget(1000))
    }

    @Test("wrong types, negatives and fractions are refused naming the argument", arguments: [
        JSON.string("1"), .bool(true), .null, .array([1]), .object([]), .int(-1), .int(Int64.min), .double(-1),
        .double(1.5), .double(0.5), .double(1e20), .double(-0.5),
    ])
    func refused(value: JSON) {
        let e = decodeError { () throws(ProtocolError) in _ = try setTarget(value) }
        #expect(e?.errorClass == .invalidParameter)
        #expect(e?.desc.hasPrefix("set-target") == true)
        #expect(e?.desc.contains("\"target\"") == true)
        #expect(e?.desc.contains(value.serialized()) == true, "desc shows what was sent: \(e?.desc ?? "")")
    }

    @Test func unknownKeysAreRefusedNamingTheKey() {
        let e = decodeError { () throws(ProtocolError) in
            _ = try Command(Request("set-target", arguments: ["target": 1, "taget": 2]))
        }
        #expect(e?.errorClass == .invalidParameter)
        #expect(e?.desc.contains("\"taget\"") == true)
        #expect(e?.desc.contains("accepted: target") == true, "\(e?.desc ?? "")")
    }
}

@Suite("HumanBytes")
struct HumanBytesTests {
    static let cases: [(UInt64, String)] = [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (4096, "4 KiB"),
        (512 << 20, "512 MiB"),
        (1 << 30, "1 GiB"),
        (3 << 29, "1.5 GiB"),
        (8_331_440_128, "7.8 GiB"),
        ((1 << 20) - 1, "1 MiB"),
        ((1 << 30) - 1, "1 GiB"),
        (1 << 40, "1 TiB"),
        (1 << 50, "1 PiB"),
        (1 << 60, "1 EiB"),
        (UInt64.max, "16 EiB"),
    ]

    @Test(arguments: cases)
    func format(bytes: UInt64, expected: String) {
        #expect(HumanBytes.format(bytes) == expected)
    }

    @Test func signed() {
        #expect(HumanBytes.format(signed: 0) == "+0 B")
        #expect(HumanBytes.format(signed: 64 << 20) == "+64 MiB")
        #expect(HumanBytes.format(signed: -(64 << 20)) == "-64 MiB")
        #expect(HumanBytes.format(signed: Int64.max) == "+8 EiB")
        #expect(HumanBytes.format(signed: Int64.min) == "-8 EiB")
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonStats
import BalloonTestSupport
import Testing
import BalloonProtocol

private func values(_ items: [QMPStreamParser.Item]) -> [JSON] {
    items.compactMap { if case let .value(v) = $0 { v } else { nil } }
}

private let gib: UInt64 = 1 << 30
private let connected = QMPGuestView(connected: true, ramSize: 2 * gib, balloon: 256 << 20)

/// A session past negotiation, and a device, with helpers to send one command.
private struct Harness {
    var session = QMPSession(version: QMPVersion(package: "test"))
    var device = QMPDevice()
    var guest = connected

    mutating func send(_ text: String) -> (reply: JSON, action: QMPAction?) {
        var parser = QMPStreamParser()
        let items = parser.feed(Array(text.utf8))
        precondition(items.count == 1, "one value per call: \(items)")
        return session.handle(items[0], device: &device, guest: guest)
    }

    static func negotiated() -> Harness {
        var h = Harness()
        _ = h.send(#"{"execute": "qmp_capabilities"}"#)
        return h
    }

    static func error(_ reply: JSON) -> (String?, String?) { (reply["error"]?["class"]?.string, reply["error"]?["desc"]?.string) }
}

@Suite("QMP stream parser")
struct QMPStreamParserTests {
    @Test func severalObjectsOnOneLineAndCRLF() {
        var p = QMPStreamParser()
        let items = p.feed(Array("{\"execute\":\"a\"}{\"execute\":\"b\"} {\"execute\":\"c\"}\r\n".utf8))
        #expect(values(items).map { $0["execute"]?.string } == ["a", "b", "c"])
        #expect(p.bufferedBytes == 0)
    }

    @Test("an object split at every byte boundary, over lines, parses the same")
    func splitAtEveryBoundary() {
        let text = Array("{\"execute\":\r\n \"balloon\", \"arguments\": {\"value\": 1073741824}, \"id\": [1, \"}\"]}\r\n".utf8)
        var whole = QMPStreamParser()
        let expected = whole.feed(text)
        #expect(values(expected).count == 1)
        for cut in 1..<text.count {
            var p = QMPStreamParser()
            #expect(p.feed(text[..<cut]) + p.feed(text[cut...]) == expected)
        }
    }

    @Test func singleQuotesAndEscapedQuote() {
        var p = QMPStreamParser()
        let items = p.feed(Array(#"{'execute': 'qom-get', 'id': 'it\'s "x"'}"#.utf8))
        #expect(values(items) == [["execute": "qom-get", "id": "it's \"x\""]])
    }

    @Test func topLevelScalarsAreValues() {
        var p = QMPStreamParser()
        #expect(values(p.feed(Array("42 \"s\" true\n".utf8))) == [42, "s", true])
    }

    @Test("a control character or 0xFF drops the partial value and yields one error")
    func lexicalErrorResets() {
        for bad: UInt8 in [0x01, 0x1B, 0xFF] {
            var p = QMPStreamParser()
            let items = p.feed(Array("{\"execute\": \"x".utf8) + [bad] + Array("{\"execute\": \"y\"}".utf8))
            #expect(items.count == 2)
            guard case let .error(desc) = items[0] else { Issue.record("expected an error: \(items)"); continue }
            #expect(desc.hasPrefix("JSON parse error"))
            #expect(values(items) == [["execute": "y"]])
        }
    }

    @Test func malformedObjectAndStrayBrace() {
        var p = QMPStreamParser()
        let items = p.feed(Array("{\"execute\": } } {\"execute\": \"z\"}".utf8))
        #expect(items.count == 3)
        #expect(items[1] == .error("JSON parse error, expecting value"))
        #expect(values(items) == [["execute": "z"]])
    }

    @Test("a value over the bound is reported once and skipped to its end")
    func sizeBound() {
        var p = QMPStreamParser(maxValueBytes: 64)
        let big = "{\"execute\": \"" + String(repeating: "x", count: 200) + "\"}"
        let items = p.feed(Array((big + "{\"execute\": \"ok\"}").utf8))
        #expect(items == [.error("JSON token size limit exceeded"), .value(["execute": "ok"])])
        #expect(p.bufferedBytes == 0)
    }
}

@Suite("QMP dialect")
struct QMPSessionTests {
    @Test func greetingHasVersionAndNoCapabilities() {
        let g = QMPVersion(package: "p").greeting
        #expect(g["QMP"]?["capabilities"] == [])
        #expect(g["QMP"]?["version"]?["qemu"]?["major"] == 10)
        #expect(g["QMP"]?["version"]?["package"] == "p")
    }

    @Test("before qmp_capabilities every command is refused as QEMU refuses it")
    func beforeNegotiation() {
        var h = Harness()
        for command in ["query-balloon", "balloon", "no-such-command", "query-version"] {
            let (reply, action) = h.send(#"{"execute": "\#(command)", "id": 7}"#)
            #expect(Harness.error(reply) == ("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'"))
            #expect(reply["id"] == 7)
            #expect(action == nil)
        }
        #expect(!h.session.commandMode)
        // A malformed command object is still a GenericError.
        #expect(Harness.error(h.send(#"{"id": 1}"#).reply) == ("GenericError", "QMP input lacks member 'execute'"))
        #expect(h.send(#"{"execute": "qmp_capabilities", "id": "neg"}"#).reply == ["return": [:], "id": "neg"])
        #expect(h.session.commandMode)
    }

    @Test func secondCapabilitiesAndOob() {
        var h = Harness()
        #expect(Harness.error(h.send(#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#).reply)
            == ("GenericError", "Capability oob not available"))
        #expect(Harness.error(h.send(#"{"execute": "qmp_capabilities", "arguments": {"enable": ["x"]}}"#).reply)
            == ("GenericError", "Parameter 'null' does not accept value 'x'"))
        #expect(Harness.error(h.send(#"{"execute": "qmp_capabilities", "arguments": {"enable": [1]}}"#).reply)
            == ("GenericError", "Invalid parameter type for 'enable[0]', expected: string"))
        h = Harness.negotiated()
        #expect(Harness.error(h.send(#"{"execute": "qmp_capabilities"}"#).reply)
            == ("CommandNotFound", "Capabilities negotiation is already complete, command ignored"))
    }

    @Test("the request checks of qmp_dispatch, with the id echoed whatever it is")
    func requestChecks() {
        var h = Harness.negotiated()
        let cases: [(String, String)] = [
            (#"[1, 2]"#, "QMP input must be a JSON object"),
            (#"{"execute": 1, "id": {"a": [1]}}"#, "QMP input member 'execute' must be a string"),
            (#"{"execute": "query-balloon", "arguments": [], "id": {"a": [1]}}"#, "QMP input member 'arguments' must be an object"),
            (#"{"exec-oob": "query-balloon", "id": {"a": [1]}}"#, "QMP input member 'exec-oob' is unexpected"),
            (#"{"execute": "query-balloon", "extra": 1, "id": {"a": [1]}}"#, "QMP input member 'extra' is unexpected"),
        ]
        for (text, desc) in cases {
            let reply = h.send(text).reply
            #expect(Harness.error(reply) == ("GenericError", desc))
            #expect(reply["id"] == (text.hasPrefix("[") ? nil : ["a": [1]]))
        }
        #expect(Harness.error(h.send(#"{"execute": "stop", "id": null}"#).reply) == ("CommandNotFound", "The command stop has not been found"))
        #expect(h.send(#"{"execute": "stop", "id": null}"#).reply["id"] == .null)
    }

    @Test("balloon takes the logical size: balloon = RAM − value, clamped, in whole pages")
    func balloonCommand() {
        var h = Harness.negotiated()
        let set = h.send(#"{"execute": "balloon", "arguments": {"value": 1610612736}}"#)
        #expect(set.reply == ["return": [:]])
        #expect(set.action == QMPAction.setBalloon(512 << 20))
        #expect(h.send(#"{"execute": "balloon", "arguments": {"value": 99999999999}}"#).action == QMPAction.setBalloon(0))
        #expect(h.send(#"{"execute": "balloon", "arguments": {"value": 2147479553}}"#).action == QMPAction.setBalloon(0))
        #expect(h.send(#"{"execute": "balloon", "arguments": {"value": 2147479551}}"#).action == QMPAction.setBalloon(4096))
        let errors: [(String, String)] = [
            (#"{"execute": "balloon"}"#, "Parameter 'value' is missing"),
            (#"{"execute": "balloon", "arguments": {"value": 1.5}}"#, "Invalid parameter type for 'value', expected: integer"),
            (#"{"execute": "balloon", "arguments": {"value": 1e9}}"#, "Invalid parameter type for 'value', expected: integer"),
            (#"{"execute": "balloon", "arguments": {"value": "1G"}}"#, "Invalid parameter type for 'value', expected: integer"),
            (#"{"execute": "balloon", "arguments": {"value": 1, "x": 2}}"#, "Parameter 'x' is unexpected"),
            (#"{"execute": "balloon", "arguments": {"value": 0}}"#, "Parameter 'value' expects a size"),
            (#"{"execute": "balloon", "arguments": {"value": -5}}"#, "Parameter 'value' expects a size"),
        ]
        for (text, desc) in errors {
            let (reply, action) = h.send(text)
            #expect(Harness.error(reply) == ("GenericError", desc))
            #expect(action == nil)
        }
    }

    @Test("no connected guest, or no RAM size yet: DeviceNotActive, as QEMU without a balloon")
    func deviceNotActive() {
        for guest in [QMPGuestView(connected: false, ramSize: gib, balloon: 0), QMPGuestView(connected: true, ramSize: 0, balloon: 0)] {
            var h = Harness.negotiated()
            h.guest = guest
            for text in [#"{"execute": "query-balloon"}"#, #"{"execute": "balloon", "arguments": {"value": 1}}"#] {
                #expect(Harness.error(h.send(text).reply) == ("DeviceNotActive", "No balloon device has been activated"))
            }
        }
    }

    @Test("query-balloon: actual and max_mem; Proxmox's stats fields only while polling, each only when reported")
    func queryBalloon() {
        var h = Harness.negotiated()
        #expect(h.send(#"{"execute": "query-balloon"}"#).reply == ["return": ["actual": .uint(2 * gib - (256 << 20)), "max_mem": .uint(2 * gib)]])
        var stats = VirtioStats()
        stats[.swapIn] = 4096
        stats[.freeMemory] = 100 << 20
        stats[.totalMemory] = 2 * gib
        stats[.majorFaults] = 12
        h.device.observe(stats, wallSeconds: 1_700_000_000)
        // Not polling: nothing taken.
        #expect(h.send(#"{"execute": "query-balloon"}"#).reply["return"]?["last_update"] == nil)
        #expect(h.send(#"{"execute": "qom-set", "arguments": {"path": "machine/peripheral/balloon0", "property": "guest-stats-polling-interval", "value": 2}}"#).reply == ["return": [:]])
        h.device.observe(stats, wallSeconds: 1_700_000_000)
        let info = h.send(#"{"execute": "query-balloon"}"#).reply["return"]
        #expect(info == [
            "actual": .uint(2 * gib - (256 << 20)), "last_update": 1_700_000_000, "mem_swapped_in": 4096, "major_page_faults": 12,
            "free_mem": .uint(100 << 20), "total_mem": .uint(2 * gib), "max_mem": .uint(2 * gib),
        ])
    }

    @Test("qom-get guest-stats: every stat-* name, absent ones as QEMU's uint64 -1, and last-update")
    func guestStats() {
        var h = Harness.negotiated()
        let get = #"{"execute": "qom-get", "arguments": {"path": "/machine/peripheral/balloon0", "property": "guest-stats"}}"#
        let before = h.send(get).reply["return"]
        #expect(before?["last-update"] == 0)
        #expect(before?["stats"]?.object?.count == 16)
        #expect(before?["stats"]?["stat-free-memory"] == JSON.uint(UInt64.max))
        #expect(before?["stats"]?["stat-direct-reclaims"] == JSON.uint(UInt64.max))
        _ = h.send(#"{"execute": "qom-set", "arguments": {"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval", "value": 1}}"#)
        var stats = VirtioStats()
        stats[.availableMemory] = 3 << 30
        h.device.observe(stats, wallSeconds: 42)
        let after = h.send(get).reply["return"]
        #expect(after?["last-update"] == 42)
        #expect(after?["stats"]?["stat-available-memory"] == JSON.uint(3 << 30))
        #expect(after?["stats"]?["stat-swap-in"] == JSON.uint(UInt64.max))
        #expect(h.send(#"{"execute": "qom-get", "arguments": {"path": "balloon0", "property": "guest-stats-polling-interval"}}"#).reply == ["return": 1])
        // Turning polling off keeps the stats taken.
        _ = h.send(#"{"execute": "qom-set", "arguments": {"path": "balloon0", "property": "guest-stats-polling-interval", "value": 0}}"#)
        #expect(h.send(get).reply["return"]?["last-update"] == 42)
    }

    @Test("QOM paths and property errors as QEMU words them")
    func qomErrors() {
        var h = Harness.negotiated()
        func set(_ path: String, _ property: String, _ value: String) -> (String?, String?) {
            Harness.error(h.send(#"{"execute": "qom-set", "arguments": {"path": "\#(path)", "property": "\#(property)", "value": \#(value)}}"#).reply)
        }
        for path in ["/machine/peripheral/balloon0", "machine/peripheral/balloon0", "peripheral/balloon0", "balloon0",
                     "/machine/peripheral/balloon0/virtio-backend", "balloon0/virtio-backend"] {
            #expect(QMPBalloonPath.typeName(of: path) != nil, "\(path)")
        }
        for path in ["/balloon0", "virtio-backend", "/machine/peripheral/balloon1", "", "/", "machine//balloon0"] {
            #expect(QMPBalloonPath.typeName(of: path) == nil, "\(path)")
        }
        #expect(set("/machine/peripheral/balloon1", "guest-stats-polling-interval", "1") == ("DeviceNotFound", "Device '/machine/peripheral/balloon1' not found"))
        #expect(set("balloon0", "guest-stats-polling-interval", "-1") == ("GenericError", "timer value must be greater than zero"))
        #expect(set("balloon0", "guest-stats-polling-interval", "4294967296") == ("GenericError", "timer value is too big"))
        #expect(set("balloon0", "guest-stats-polling-interval", "\"2\"") == ("GenericError", "Invalid parameter type for 'guest-stats-polling-interval', expected: integer"))
        #expect(set("balloon0", "guest-stats", "{}") == ("GenericError", "Property 'virtio-balloon-device.guest-stats' is not writable"))
        #expect(set("balloon0", "nope", "1") == ("GenericError", "Property 'virtio-balloon-pci.nope' not found"))
        #expect(set("balloon0/virtio-backend", "nope", "1") == ("GenericError", "Property 'virtio-balloon-device.nope' not found"))
        #expect(Harness.error(h.send(#"{"execute": "qom-get", "arguments": {"path": "balloon0"}}"#).reply) == ("GenericError", "Parameter 'property' is missing"))
        #expect(h.device.pollingInterval == 0)
    }

    @Test func queryCommandsAndVersion() {
        var h = Harness.negotiated()
        let names = h.send(#"{"execute": "query-commands"}"#).reply["return"]?.array?.compactMap { $0["name"]?.string }
        #expect(names == QMPCommand.names)
        #expect(h.send(#"{"execute": "query-version", "id": 3}"#).reply == ["return": QMPVersion(package: "test").json, "id": 3])
    }

    @Test("the wire form: a space after colons and commas, ASCII only, CRLF")
    func wireForm() {
        let bytes = QMPWire.encode(["return": ["a": [1, "é😀"]], "id": "x"])
        #expect(String(decoding: bytes, as: UTF8.self) == "{\"return\": {\"a\": [1, \"\\u00e9\\ud83d\\ude00\"]}, \"id\": \"x\"}\r\n")
        var p = QMPStreamParser()
        #expect(values(p.feed(bytes)) == [["return": ["a": [1, "é😀"]], "id": "x"]])
    }
}

@Suite("QMP docs")
struct QMPDocTests {
    @Test("every -> and <- line of docs/qmp.md is one QMP value, and the session answers each command as shown")
    func docExamples() throws {
        var h = Harness()
        h.guest = QMPGuestView(connected: true, ramSize: 4 * gib, balloon: 0)
        var count = 0
        for line in try RepoFiles.text("docs/qmp.md").split(separator: "\n") where line.hasPrefix("-> ") || line.hasPrefix("<- ") {
            var p = QMPStreamParser()
            let items = p.feed(Array(line.dropFirst(3).utf8))
            #expect(values(items).count == 1, "\(line)")
            count += 1
            guard line.hasPrefix("-> "), case let .value(v)? = items.first else { continue }
            let reply = h.session.handle(.value(v), device: &h.device, guest: h.guest).reply
            #expect(reply["error"] == nil, "\(line): \(reply)")
        }
        #expect(count >= 10)
    }
}

@Suite("QMP event throttle")
struct QMPEventLimiterTests {
    private func event(_ n: UInt64) -> JSON { QMPEvent.balloonChange(actual: n, at: .seconds(1_700_000_000) + .microseconds(250)) }

    @Test("the first event goes out at once; later ones in the second: the last one at its end")
    func lastOneWins() {
        var l = QMPEventLimiter()
        let t0: Duration = .seconds(100)
        #expect(l.offer(event(1), now: t0) == event(1))
        #expect(l.deadline == t0 + .seconds(1))
        #expect(l.offer(event(2), now: t0 + .milliseconds(100)) == nil)
        #expect(l.offer(event(3), now: t0 + .milliseconds(900)) == nil)
        #expect(l.expire(now: t0 + .milliseconds(999)) == nil)
        #expect(l.expire(now: t0 + .seconds(1)) == event(3))
        // Sending it opened another window.
        #expect(l.deadline == t0 + .seconds(2))
        #expect(l.offer(event(4), now: t0 + .milliseconds(1500)) == nil)
        #expect(l.expire(now: t0 + .seconds(2)) == event(4))
        // A window that ends with nothing held closes; the next event goes at once.
        #expect(l.expire(now: t0 + .seconds(3)) == nil)
        #expect(l.deadline == nil)
        #expect(l.offer(event(5), now: t0 + .seconds(10)) == event(5))
    }

    @Test func eventForm() {
        let e = event(1024)
        #expect(e["event"] == "BALLOON_CHANGE")
        #expect(e["data"] == ["actual": 1024])
        #expect(e["timestamp"] == ["seconds": 1_700_000_000, "microseconds": 250])
    }
}

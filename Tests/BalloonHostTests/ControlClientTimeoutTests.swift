// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// Control clients that hold a slot without using it (issue 13): the pure
/// rule with a fake clock, then the loop applying it on its tick.
@Suite struct ControlClientTimeoutRule {
    let rule = ControlClientTimeouts()
    let t0: Duration = .seconds(1000)

    @Test func aSilentClientHasTenSecondsForItsFirstRequest() {
        let a = ControlClientTimeouts.Activity(connected: t0)
        #expect(rule.verdict(a, now: t0 + .milliseconds(9_999), subscribed: false) == .keep)
        #expect(rule.verdict(a, now: t0 + .seconds(10), subscribed: false) == .incompleteRequest)
        // Selected or not: it has not asked for anything yet.
        #expect(rule.verdict(a, now: t0 + .seconds(10), subscribed: true) == .incompleteRequest)
        #expect(rule.reason(.incompleteRequest) == "no complete request within 10 s")
    }

    @Test func aDribblerIsDroppedTenSecondsAfterItsLineBegan() {
        // Its first request, a byte a second: timed from the connect.
        var a = ControlClientTimeouts.Activity(connected: t0)
        for s in 1...9 { a.read(at: t0 + .seconds(Int64(s)), completedLine: false, openLine: true) }
        #expect(a.lineStarted == t0 + .seconds(1))
        #expect(rule.verdict(a, now: t0 + .seconds(10), subscribed: true) == .incompleteRequest)

        // A later request dribbled: timed from its first byte, subscribed or not.
        var b = ControlClientTimeouts.Activity(connected: t0)
        b.read(at: t0 + .seconds(1), completedLine: true, openLine: false)
        #expect(b.lineStarted == nil && b.lastRequest == t0 + .seconds(1))
        b.read(at: t0 + .seconds(100), completedLine: false, openLine: true)
        b.read(at: t0 + .seconds(105), completedLine: false, openLine: true)
        #expect(rule.verdict(b, now: t0 + .seconds(109), subscribed: true) == .keep)
        #expect(rule.verdict(b, now: t0 + .seconds(110), subscribed: true) == .incompleteRequest)
        // The line ends in time: nothing is open any more.
        b.read(at: t0 + .seconds(109), completedLine: true, openLine: false)
        #expect(rule.verdict(b, now: t0 + .seconds(200), subscribed: true) == .keep)
    }

    @Test func aLineBegunInTheReadThatEndedAnotherIsTimedFromThatRead() {
        var a = ControlClientTimeouts.Activity(connected: t0)
        a.read(at: t0 + .seconds(1), completedLine: false, openLine: true)
        a.read(at: t0 + .seconds(8), completedLine: true, openLine: true)
        #expect(a.lineStarted == t0 + .seconds(8) && a.lastRequest == t0 + .seconds(8))
        #expect(rule.verdict(a, now: t0 + .seconds(17), subscribed: false) == .keep)
        #expect(rule.verdict(a, now: t0 + .seconds(18), subscribed: false) == .incompleteRequest)
    }

    @Test func onlyAClientWithNoGuestSelectedGoesIdle() {
        var a = ControlClientTimeouts.Activity(connected: t0)
        a.read(at: t0 + .seconds(2), completedLine: true, openLine: false)
        // `balloonctl events`: a request, then only reads.
        #expect(rule.verdict(a, now: t0 + .seconds(86_400), subscribed: true) == .keep)
        #expect(rule.verdict(a, now: t0 + .seconds(301), subscribed: false) == .keep)
        #expect(rule.verdict(a, now: t0 + .seconds(302), subscribed: false) == .idle)
        #expect(rule.reason(.idle) == "idle for 300 s with no guest selected")
        #expect(rule.reason(.keep) == nil)
    }
}

/// The rule on the loop's tick: a real loop on a thread, its clock a fake
/// the test moves; each client's drop is seen as EOF on its socket.
@Suite(.serialized) struct ControlClientTimeoutLoop {
    final class FakeClock: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Duration = .seconds(1000)
        var now: Duration { lock.lock(); defer { lock.unlock() }; return value }
        func advance(_ by: Duration) { lock.lock(); value += by; lock.unlock() }
    }

    final class Running: @unchecked Sendable {
        let loop: ServeLoop
        private let lock = NSLock()
        private var ended = false
        init(_ loop: ServeLoop) {
            self.loop = loop
            Thread { [self] in
                try? self.loop.run()
                lock.lock(); ended = true; lock.unlock()
            }.start()
        }
        func stop() -> Bool {
            loop.stop()
            return waitUntil { lock.lock(); defer { lock.unlock() }; return ended }
        }
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = try StreamSocket.connectUnix(path: path)
        return dup(fd.raw)  // the test owns this copy; the Descriptor's is closed below
    }

    static func send(_ fd: Int32, _ text: String) {
        _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// The next reply line (the receive timeout only bounds a failure).
    static func reply(_ fd: Int32) -> String {
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1 {
            if byte == 0x0A { break }
            out.append(byte)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// EOF waiting: the loop dropped this client.
    static func closedByPeer(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK)) == 0
    }

    @Test func silentDribblingAndIdleClientsAreDroppedAndReadersStay() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let clock = FakeClock()
        let control = dir.path + "/control"
        let lines = Recorder()
        var settings = ServeLoop.Settings(controlPath: control)
        settings.log = { lines.add($0) }
        let loop = try ServeLoop(settings: settings) { clock.now }
        // A guest to select (it is never there: the peer only reconnects).
        try loop.addPeer(name: "g", options: ServeOptions(guest: .unix(path: dir.path + "/no-guest"), controlPath: control), frames: nil)
        let running = Running(loop)

        // Accepted in this order, so once the later ones are answered the silent one is in.
        let silent = try Self.connect(control)
        let dribbler = try Self.connect(control)
        let asker = try Self.connect(control)
        let reader = try Self.connect(control)
        defer { [silent, dribbler, asker, reader].forEach { close($0) } }
        // One write: a request (answered, so the read happened) and the start of another.
        Self.send(dribbler, #"{"execute":"list-guests","id":1}"# + "\n" + #"{"execute":"list-gu"#)
        #expect(Self.reply(dribbler).contains(#""id":1"#))
        Self.send(asker, #"{"execute":"list-guests","id":2}"# + "\n")
        #expect(Self.reply(asker).contains(#""id":2"#))
        Self.send(reader, #"{"execute":"select-guest","arguments":{"name":"g"},"id":3}"# + "\n")
        #expect(Self.reply(reader).contains(#""id":3"#))

        // 10 s on: no first request, and a line open for 10 s.
        clock.advance(.seconds(10))
        #expect(waitUntil { Self.closedByPeer(silent) && Self.closedByPeer(dribbler) })
        // The same tick kept the others.
        #expect(!Self.closedByPeer(asker) && !Self.closedByPeer(reader))
        #expect(waitUntil { lines.all.contains("2 control clients dropped (1, 2): no complete request within 10 s") }, "\(lines.all)")

        // 5 minutes on: the asker selected no guest and is idle; the reader reads g's events.
        clock.advance(.seconds(300))
        #expect(waitUntil { Self.closedByPeer(asker) })
        #expect(!Self.closedByPeer(reader))
        #expect(waitUntil { lines.all.contains("control client 3 dropped: idle for 300 s with no guest selected") }, "\(lines.all)")
        Self.send(reader, #"{"execute":"guest-status","arguments":{"name":"g"},"id":4}"# + "\n")
        guard case let .response(answer) = try Message.decode(Array(Self.reply(reader).utf8)) else { Issue.record("no reply"); return }
        let status = try GuestStatusReply(json: try answer.result.get())
        #expect(status.session.clientsDropped == 3 && status.session.controlClients == 1, "\(status.json)")
        #expect(running.stop())
    }
}

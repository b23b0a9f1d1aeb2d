// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonStats
import BalloonSystem
import Glibc
import Testing

@Suite struct SessionTests {
    @Test func syncDiscardsStaleBytesBeforeTheGuestsResync() throws {
        let (host, thread) = try pairWithGuest { guest in
            // Left in the channel while nobody listened: an old reply, an event,
            // an old sync reply from another host (with its own 0xFF), a partial line.
            guest.write("{\"return\":{\"target\":1},\"id\":1}\n")
            guest.event(.targetReached(.init(actual: 1, target: 1)))
            guest.write([0xFF] + Array("{\"return\":777,\"id\":777}\n{\"event\":\"BALLOON_CH".utf8))
            guard let sync = guest.readRequest(), sync.execute == Command.Name.sync.rawValue else { return }
            #expect(guest.resyncsSeen == 1)  // the host wrote 0xFF before the request
            #expect(sync.id != nil && sync.id == sync.arguments["id"])
            // More stale output written after the request but before the answer.
            guest.write("{\"event\":\"BALLOON_CHANGE\",\"data\":{\"actual\":5,\"target\":5}}\n{\"return\":")
            guest.answerSync(sync)
            guard let info = guest.readRequest() else { return }
            guest.reply(info, Canned.info)
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host, timeout: .seconds(5))
        try session.sync()
        let info = try session.info()
        #expect(info.version == "0.1.0")
        #expect(info.pageSize == 4096)
        #expect(info.features == ["stats", "stats-events", "balloon-events"])
        #expect(session.pendingEvents.isEmpty, "stale events before the sync reply must be dropped")
        session.close()
    }

    @Test func syncSkipsAnOlderSyncReplyAfterTheResync() throws {
        let (host, thread) = try pairWithGuest { guest in
            guard let sync = guest.readRequest() else { return }
            // 0xFF, then a reply to someone else's sync, then ours after another 0xFF.
            guest.write([0xFF])
            guest.write("{\"return\":12345,\"id\":12345}\n")
            guest.event(.balloonChange(.init(actual: 0, target: 0)))
            guest.answerSync(sync)
            guard let q = guest.readRequest() else { return }
            guest.reply(q, Canned.query(target: 0, actual: 0, state: .idle))
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host)
        let id = try session.sync()
        #expect(id > 0 && id < 1 << 53)
        #expect(try session.query().state == .idle)
        #expect(session.pendingEvents.isEmpty)
    }

    @Test func replyPrecededByResyncAndPartialLineIsRead() throws {
        let (host, thread) = try pairWithGuest { guest in
            guest.awaitSync()
            guard let r = guest.readRequest() else { return }
            guest.write(Array("{\"event\":\"BALL".utf8) + [0xFF])  // cut off by a resync
            guest.write([0xFF])
            guest.reply(r, Canned.query(target: 4096, actual: 4096, state: .idle))
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host)
        try session.sync()
        let status = try session.query()
        #expect(status.target == 4096 && status.actual == 4096 && status.reason == nil)
        #expect(session.pendingEvents.isEmpty)
    }

    @Test func eventsInterleavedWithRepliesAreQueuedInOrder() throws {
        let (host, thread) = try pairWithGuest { guest in
            guest.awaitSync()
            guard let set = guest.readRequest() else { return }
            #expect((try? Command(set)) == .setTarget(256 << 20))
            #expect(set.arguments["target"]?.uint64 == 256 << 20)
            guest.event(.stats(Canned.statsReply))
            // A reply, then two events and a second reply in one write.
            guest.reply(set, ["target": .uint(256 << 20), "effective-target": .uint(256 << 20), "actual": 0])
            guest.write(
                GuestEvent.balloonChange(.init(actual: 64 << 20, target: 256 << 20)).line
                    + GuestEvent.balloonChange(.init(actual: 128 << 20, target: 256 << 20)).line)
            guard let q = guest.readRequest() else { return }
            guest.event(.balloonChange(.init(actual: 192 << 20, target: 256 << 20)))
            guest.reply(q, Canned.query(target: 256 << 20, actual: 192 << 20, state: .inflating))
            guest.event(.balloonChange(.init(actual: 256 << 20, target: 256 << 20)))
            guest.event(.targetReached(.init(actual: 256 << 20, target: 256 << 20)))
            _ = guest.readRequest(timeoutMs: 3000)  // until the host hangs up
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host)
        defer { session.close() }
        try session.sync()
        let reply = try session.setTarget(256 << 20)
        #expect(reply.target == 256 << 20 && reply.effectiveTarget == 256 << 20 && reply.actual == 0)
        #expect(!reply.isDone && !reply.isStoppedShort)
        #expect(session.pendingEvents.map(\.name) == [GuestEvent.Name.stats.rawValue])
        session.discardQueuedEvents()
        #expect(try session.query().state == .inflating)
        var actuals: [UInt64] = []
        var names: [String] = []
        while let e = try session.nextEvent(timeout: .seconds(5)) {
            names.append(e.name)
            actuals.append((try? GuestEvent(e))?.progress?.actual ?? 0)
            if e.name == GuestEvent.Name.targetReached.rawValue { break }
        }
        #expect(names == [.balloonChange, .balloonChange, .balloonChange, .balloonChange, .targetReached].map(\GuestEvent.Name.rawValue))
        let mib: [UInt64] = [64, 128, 192, 256, 256]
        #expect(actuals == mib.map { $0 << 20 })
        #expect(try session.nextEvent(timeout: .milliseconds(50)) == nil)
    }

    @Test func callIDsIncreaseAndStaleRepliesAreIgnored() throws {
        let (host, thread) = try pairWithGuest { guest in
            guest.awaitSync()
            var ids: [JSON] = []
            for _ in 0..<3 {
                guard let r = guest.readRequest() else { return }
                ids.append(r.id ?? .null)
                guest.writeLine(["return": ["interval-ms": 1], "id": 9999])  // not ours
                guest.reply(r, ["interval-ms": r.arguments["interval-ms"] ?? 0])
            }
            #expect(ids == [.int(1), .int(2), .int(3)])
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host)
        try session.sync()
        #expect(try session.setStatsInterval(.milliseconds(100)) == .milliseconds(100))
        #expect(try session.setStatsInterval(.zero) == .zero)
        #expect(try session.setStatsInterval(.milliseconds(2500)) == .milliseconds(2500))
    }

    @Test func errorReplyThrowsWithClassAndDesc() throws {
        let (host, thread) = try pairWithGuest { guest in
            guest.awaitSync()
            guard let r = guest.readRequest() else { return }
            guest.fail(r, .invalidParameter, "set-target: \"target\" exceeds memory-total (8331440128)")
            guard let r2 = guest.readRequest() else { return }
            guest.writeLine(["error": ["class": "MalformedMessage", "desc": "bad line"], "id": nil])
            _ = r2
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host)
        try session.sync()
        let error = #expect(throws: HostError.self) { try session.setTarget(1 << 40) }
        guard case let .guest(command, protocolError)? = error else {
            Issue.record("expected a guest error, got \(String(describing: error))")
            return
        }
        #expect(command == "set-target")
        #expect(protocolError.errorClass == .invalidParameter)
        #expect(error?.description == "set-target failed: InvalidParameter: set-target: \"target\" exceeds memory-total (8331440128)")
        // An error reply with a null id answers the outstanding request.
        let second = #expect(throws: HostError.self) { try session.query() }
        #expect(second?.description == "query failed: MalformedMessage: bad line")
    }

    @Test func guestThatNeverAnswersTimesOut() throws {
        let (host, thread) = try pairWithGuest { guest in
            guest.awaitSync()
            _ = guest.readRequest()
            _ = guest.readRequest(timeoutMs: 3000)  // stays silent until the host gives up
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host, timeout: .milliseconds(300))
        try session.sync()
        let start = ContinuousClock.now
        let error = #expect(throws: HostError.self) { try session.info() }
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(250) && waited < .seconds(3))
        #expect(error == .timeout(waitingFor: "the reply to info", seconds: 0.3))
        #expect(error?.description == "the guest did not answer within 0.3 s (waiting for the reply to info)")
        session.close()
    }

    @Test func guestThatNeverSyncsTimesOut() throws {
        let (host, thread) = try pairWithGuest { guest in
            _ = guest.readRequest()
            guest.write("{\"return\":1,\"id\":1}\n")  // no 0xFF: all of it is stale
            _ = guest.readRequest(timeoutMs: 3000)
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host, timeout: .milliseconds(200))
        #expect(throws: HostError.timeout(waitingFor: "the sync reply", seconds: 0.2)) { try session.sync() }
        session.close()
    }

    @Test func guestClosingMidCallIsAClearError() throws {
        let (host, thread) = try pairWithGuest { guest in
            guest.awaitSync()
            guard guest.readRequest() != nil else { return }
            guest.write("{\"return\":{\"ver")  // half a reply, then gone
            guest.fd.close()
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host)
        try session.sync()
        let error = #expect(throws: HostError.self) { try session.info() }
        #expect(error == .closed(waitingFor: "the reply to info"))
        #expect(error?.description == "the guest closed the connection (waiting for the reply to info)")
        // Writing to it now is an error too, not a SIGPIPE.
        #expect(throws: HostError.self) { try session.query() }
    }

    @Test func nextEventTimesOutWithNil() throws {
        let (host, thread) = try pairWithGuest { guest in
            guest.awaitSync()
            _ = guest.readRequest(timeoutMs: 2000)
        }
        defer { thread.join() }
        let session = GuestSession(descriptor: host)
        try session.sync()
        #expect(try session.nextEvent(timeout: .milliseconds(100)) == nil)
        session.close()
    }

    // MARK: - transports

    @Test func unixConnectSyncAndCall() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.path + "/guest.sock"
        let thread = try serveOnce(path: path) { guest in
            guest.awaitSync()
            guard let r = guest.readRequest() else { return }
            guest.reply(r, Canned.stats)
        }
        defer { thread.join() }
        let session = try GuestSession.open(.unix(path: path))
        let stats = try session.stats()
        #expect(stats.stats[.majorFaults] == 1234)
        #expect(stats.stats[.htlbPgalloc] == nil)
        #expect(stats.stats[.availableMemory] == 7_500_000_000)
        #expect(stats.pressure?.some?.avg10 == 1.25 && stats.pressure?.some?.total == 12345)
        #expect(stats.balloonActual == 134_217_728)
        session.close()
    }

    @Test func missingSocketAndRefusedConnection() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let missing = dir.path + "/nope.sock"
        let error = #expect(throws: HostError.self) { _ = try GuestAddress.unix(path: missing).connect() }
        #expect(error?.description == "cannot connect to \(missing): No such file or directory")

        // A socket file nobody listens on any more.
        let stale = dir.path + "/stale.sock"
        try StreamSocket.listenUnix(path: stale).close()
        let refused = #expect(throws: HostError.self) { _ = try GuestAddress.unix(path: stale).connect() }
        #expect(refused?.description == "cannot connect to \(stale): Connection refused")
    }

    @Test func hybridVsockHandshakeThenProtocol() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.path + "/v.sock"
        let thread = try serveOnce(path: path) { vmm in
            // The VMM reads exactly the CONNECT line.
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while read(vmm.fd.raw, &byte, 1) == 1, byte != 0x0A { line.append(byte) }
            #expect(String(decoding: line, as: UTF8.self) == "CONNECT 7468")
            vmm.write("OK 1073741824\n")
            vmm.awaitSync()
            guard let r = vmm.readRequest() else { return }
            vmm.reply(r, Canned.info)
        }
        defer { thread.join() }
        let session = try GuestSession.open(.hybridVsock(path: path, port: 7468))
        #expect(try session.info().chunkSize == 64 << 20)
        session.close()
    }

    @Test func hybridVsockRefusedHandshake() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.path + "/v.sock"
        let thread = try serveOnce(path: path) { vmm in
            var byte: UInt8 = 0
            while read(vmm.fd.raw, &byte, 1) == 1, byte != 0x0A {}
            vmm.write("ERR connection refused\n")
        }
        defer { thread.join() }
        let error = #expect(throws: HostError.self) { _ = try GuestAddress.hybridVsock(path: path, port: 7468).connect() }
        #expect(error?.description == "hybrid vsock handshake with \(path) port 7468 failed: expected \"OK <n>\", got \"ERR connection refused\"")
    }

    @Test func hybridVsockVMMClosesWithoutAnswer() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.path + "/v.sock"
        let thread = try serveOnce(path: path) { vmm in
            var byte: UInt8 = 0
            while read(vmm.fd.raw, &byte, 1) == 1, byte != 0x0A {}
        }
        defer { thread.join() }
        let error = #expect(throws: HostError.self) { _ = try GuestAddress.hybridVsock(path: path, port: 52).connect() }
        #expect(error?.description.contains("the VMM closed the connection (is balloond listening on vsock port 52 in the guest?)") == true)
    }

    @Test func hybridVsockSilentVMMTimesOut() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.path + "/v.sock"
        let thread = try serveOnce(path: path) { vmm in
            // Never answers CONNECT; holds the connection until the host gives up.
            _ = vmm.readRequest(timeoutMs: 10_000)
        }
        defer { thread.join() }
        let error = #expect(throws: HostError.self) {
            _ = try GuestAddress.hybridVsock(path: path, port: 9).connect(timeout: .milliseconds(200))
        }
        #expect(error?.description.contains("no answer to CONNECT 9 within 0.2 s") == true)
    }

    @Test func addressParsing() throws {
        #expect(try GuestAddress.parseVsock("3:7468") == .vsock(cid: 3, port: 7468))
        #expect(try GuestAddress.parseHybridVsock("/run/fc:x/v.sock:7468") == .hybridVsock(path: "/run/fc:x/v.sock", port: 7468))
        for bad in ["3", "3:", ":7468", "a:b", "3:7468:1", "-1:2", "3:99999999999"] {
            #expect(throws: HostError.self) { try GuestAddress.parseVsock(bad) }
        }
        for bad in ["/v.sock", ":7468", "/v.sock:", "/v.sock:port"] {
            #expect(throws: HostError.self) { try GuestAddress.parseHybridVsock(bad) }
        }
    }
}

extension GuestEvent {
    /// This event as one line on the wire.
    var line: String { event(at: Timestamp(seconds: 1, microseconds: 2)).json.serialized() + "\n" }
}

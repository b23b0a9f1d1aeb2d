// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Glibc
import Testing

private let MiB: UInt64 = 1 << 20

/// `balloonctl serve` end to end: the built executable, a fake guest on a real
/// unix socket, a RAM backend file on /dev/shm, other balloonctl calls
/// through the control socket.
/// The error class a call through `session` fails with (nil: it worked).
private func errorClass(_ session: GuestSession, _ command: Command) -> ErrorClass? {
    do {
        _ = try session.call(command)
        return nil
    } catch {
        switch error {
        case let .guest(_, protocolError): return protocolError.errorClass
        default: return nil
        }
    }
}

/// The reply to one request line written as is (for what `Command` cannot say).
private func rawReply(_ path: String, _ line: String) throws -> Response? {
    let fd = try GuestAddress.unix(path: path).connect(timeout: .seconds(5))
    defer { fd.close() }
    try HostIO.sendAll(fd, Array((line + "\n").utf8))
    var framer = LineFramer()
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    defer { buffer.deallocate() }
    while try HostIO.waitReadable(fd, timeout: .milliseconds(10_000)) {
        let n = try HostIO.read(fd, into: buffer)
        guard n > 0 else { return nil }
        for case let .line(l) in framer.feed(UnsafeRawBufferPointer(rebasing: buffer[..<n])) {
            if case let .response(r) = try Message.decode(l) { return r }
        }
    }
    return nil
}

@Suite(.serialized) struct ServeTests {
    let exe = balloonctlPath()

    @Test func framesControlAndReconnect() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let backend = ShmFile(size: Int(64 * MiB))
        defer { backend.remove() }
        let gsock = dir.path + "/guest.sock", csock = dir.path + "/control.sock"
        let first = Recorder(), second = Recorder()
        let blocksAtStart = backend.status().blocks

        // Session 1: frame reporting, the --target, frames (some malicious), then close on `info`.
        let guest1 = try serveOnce(path: gsock) { g in
            guard let fr = g.serveUntil(.setFrameReporting, recorder: first) else { return }
            #expect(fr.arguments["enabled"] == .bool(true))
            g.answer(fr)
            guard let q = g.serveUntil(.query, recorder: first) else { return }
            g.answer(q)  // target 0: serve applies --target
            guard let st = g.serveUntil(.setTarget, recorder: first) else { return }
            #expect(st.arguments["target"]?.uint64 == 128 * MiB)
            g.answer(st)
            g.frames(.framesInflated, seq: 1, [
                [256, 256],  // 1 MiB at 1 MiB
                [1024, 512],  // 2 MiB at 4 MiB
                [300, 10],  // overlaps the first range of this event
                [12288, 16],  // 48 MiB: in the file, outside guest RAM (--ram-size 32M)
                ["x", 1],  // malformed
            ])
            guard let a1 = g.serveUntil(.framesAck, recorder: first) else { return }
            #expect(a1.arguments["seq"]?.uint64 == 1)
            g.answer(a1)
            g.frames(.framesDeflated, seq: 2, [[256, 256], [5000, 1]])  // the second was never held
            guard let a2 = g.serveUntil(.framesAck, recorder: first) else { return }
            #expect(a2.arguments["seq"]?.uint64 == 2)
            g.answer(a2)
            guard let info = g.serveUntil(.info, recorder: first) else { return }
            g.answer(info)  // and hang up
        }

        let serve = Background(exe, [
            "serve", "--unix", gsock, "--control", csock, "--target", "128M",
            "--memory-backend", backend.path, "--ram-size", "32M", "--timeout", "5",
        ], in: dir, name: "serve")
        defer { _ = serve.terminate() }

        let afterFrames = waitForStatus(csock) { $0.punches == 2 && $0.refused.malformed == 2 && $0.bytesPopulated == MiB }
        guard let s1 = afterFrames else {
            Issue.record("serve did not handle the frames: \(String(describing: serveStatus(csock))) \(serve.stderrSoFar)")
            guest1.join()
            return
        }
        #expect((try? StreamIO.mode(of: csock)) == 0o600)
        #expect(s1.guestConnected)
        #expect(s1.frameReporting)
        #expect(s1.bytesFreed == 3 * MiB)
        #expect(s1.refused.outsideRam == 1)
        #expect(s1.refused.overlap == 1)
        #expect(s1.refused.rateLimit == 0)
        #expect(s1.framesHeld == 512)  // 2 MiB after the deflate
        #expect(s1.desiredTarget == 128 * MiB)
        // Exactly the accepted 3 MiB were freed; nothing outside guest RAM.
        // The MiB the guest took back is allocated again (zeros, as it left them).
        let st1 = backend.status()
        #expect(st1.size == 64 * MiB)
        #expect(blocksAtStart - st1.blocks == 2 * MiB / 512)
        #expect(backend.isFilled(MiB, Int(MiB), with: 0))
        #expect(backend.isFilled(4 * MiB, Int(2 * MiB), with: 0))
        #expect(backend.isFilled(2 * MiB, Int(2 * MiB), with: 0xAB))
        #expect(backend.isFilled(32 * MiB, Int(32 * MiB), with: 0xAB))

        // An events client, then `set` through serve: the guest's BALLOON_CHANGE reaches it.
        let events = Background(exe, ["events", "--count", "1", "--control", csock], in: dir, name: "events")
        // Until the events client has synced, the BALLOON_CHANGE is stale to it: set until it sees one.
        let delivered = waitUntil(timeout: .seconds(10), interval: .milliseconds(50)) {
            let set = run(exe, ["--control", csock, "set", "256M"], in: dir)
            #expect(set.status == 0, "\(set.stderr) serve: \(serve.stderrSoFar)")
            #expect(set.stdout == "target 256 MiB, actual 0 B\n")
            return events.hasExited || set.status != 0
        }
        #expect(delivered)
        let ev = events.wait(seconds: 10)
        #expect(ev.status == 0, "\(ev.stderr)")
        #expect(ev.stdout.contains("BALLOON_CHANGE actual 4 KiB / target 256 MiB"))
        #expect(serveStatus(csock)?.desiredTarget == 256 * MiB)

        let query = run(exe, ["query", "--control", csock], in: dir)
        #expect(query.status == 0, "\(query.stderr)")
        #expect(query.stdout.contains("state             idle"))
        let stats = run(exe, ["--control", csock, "stats"], in: dir)
        #expect(stats.status == 0, "\(stats.stderr)")
        #expect(stats.stdout.contains("swap-out          4 KiB"))
        let status = run(exe, ["--control", csock, "serve-status"], in: dir)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("frame reporting  on"))
        #expect(status.stdout.contains("bytes populated  1 MiB"))
        #expect(status.stdout.contains("refused          outside RAM 1, overlap 1, rate limit 0, malformed 2"))

        // Frame reporting belongs to serve.
        let session = try GuestSession.open(.unix(path: csock))
        #expect(errorClass(session, .framesAck(seq: 1)) == .invalidParameter)
        #expect(errorClass(session, .setFrameReporting(enabled: false)) == .invalidParameter)
        #expect(errorClass(session, .query) == nil)
        let unknown = try rawReply(csock, #"{"execute":"no-such-command","id":5}"#)
        #expect(unknown?.id == 5)
        if case let .failure(e)? = unknown?.result {
            #expect(e == Command.notFound("no-such-command", scope: .serveControl))
        } else {
            Issue.record("no-such-command was not refused: \(String(describing: unknown))")
        }
        let typo = try rawReply(csock, #"{"execute":"set-target","arguments":{"tagret":1},"id":6}"#)
        #expect(typo?.result == .failure(ProtocolError(.invalidParameter, "set-target: unknown argument \"tagret\" (accepted: target)")))
        session.close()

        // The guest hangs up after `info`: serve forgets the frames and reconnects.
        let info = run(exe, ["--control", csock, "info", "--json"], in: dir)
        #expect(info.status == 0, "\(info.stderr)")
        guest1.join()
        let away = waitForStatus(csock) { !$0.guestConnected }
        #expect(away?.framesHeld == 0)
        #expect(away?.frameReporting == false)
        let refused = run(exe, ["--control", csock, "query"], in: dir)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("reconnecting"), "\(refused.stderr)")

        // Session 2, a fresh listener: a restarted guest (target 0, actual 0).
        let guest2 = try serveOnce(path: gsock) { g in
            guard let fr = g.serveUntil(.setFrameReporting, recorder: second) else { return }
            g.answer(fr)
            guard let q = g.serveUntil(.query, recorder: second) else { return }
            g.answer(q)
            guard let st = g.serveUntil(.setTarget, recorder: second) else { return }
            #expect(st.arguments["target"]?.uint64 == 256 * MiB)  // the last `set`, re-applied
            g.answer(st)
            g.frames(.framesInflated, seq: 1, [[2048, 256]])  // 1 MiB at 8 MiB
            guard let a = g.serveUntil(.framesAck, recorder: second) else { return }
            #expect(a.arguments["seq"]?.uint64 == 1)
            g.answer(a)
            g.serveAll(recorder: second)
        }
        let back = waitForStatus(csock, seconds: 15) { $0.reconnects == 1 && $0.guestConnected && $0.punches == 3 }
        #expect(back != nil, "\(String(describing: serveStatus(csock))) \(serve.stderrSoFar)")
        #expect(back?.framesHeld == 256)
        #expect(back?.frameReporting == true)
        #expect(blocksAtStart - backend.status().blocks == 3 * MiB / 512)
        #expect(backend.isFilled(8 * MiB, Int(MiB), with: 0))

        let result = serve.terminate()
        guest2.join()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(access(csock, F_OK) != 0)  // removed on exit
        #expect(result.stderr.contains("guest connection lost: the guest closed the connection"))
        #expect(first.all.first?.hasPrefix("sync") == true)
        #expect(second.all.contains { $0.hasPrefix("set-target {\"target\":268435456}") })
    }

    @Test func aControlClientThatNeverReadsDoesNotStallServe() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let gsock = dir.path + "/guest.sock", csock = dir.path + "/control.sock"
        let recorder = Recorder()
        let guest = try serveOnce(path: gsock) { g in g.serveAll(recorder: recorder) }
        let serve = Background(exe, ["serve", "--unix", gsock, "--control", csock], in: dir, name: "serve")
        defer { _ = serve.terminate() }
        #expect(waitForStatus(csock) { $0.guestConnected } != nil, "\(serve.stderrSoFar)")

        // Thousands of requests, never a read: its replies pile up at serve.
        let slow = try StreamSocket.connectUnix(path: csock)
        var burst: [UInt8] = [0xFF]
        for i in 0..<4000 {
            burst += Message.request(Command.serveStatus.request(id: .int(Int64(i)))).encoded()
        }
        try? HostIO.sendAll(slow, burst)

        // Others are still served, and the slow one was dropped.
        let dropped = waitForStatus(csock) { $0.clientsDropped >= 1 }
        #expect(dropped != nil, "\(serve.stderrSoFar)")
        let query = run(exe, ["--control", csock, "query", "--json"], in: dir)
        #expect(query.status == 0, "\(query.stderr)")
        #expect(query.stdout.contains("\"state\":\"idle\""))
        slow.close()

        let result = serve.terminate()
        guest.join()
        #expect(result.status == 0)
        #expect(result.stderr.contains("dropped: not reading"))
    }

    @Test func serveNeedsAGuestAndAControlSocket() {
        let dir = TempDir()
        defer { dir.remove() }
        let r = run(exe, ["serve", "--control", dir.path + "/c.sock"], in: dir)
        #expect(r.status == 1)
        #expect(r.stderr.contains("one of --unix"))
        let r2 = run(exe, ["serve", "--unix", dir.path + "/g.sock", "--control", dir.path + "/c.sock", "--ram-map", "pc"], in: dir)
        #expect(r2.status == 1)
        #expect(r2.stderr.contains("need --memory-backend"))
        let r3 = run(exe, ["--unix", dir.path + "/g.sock", "--control", dir.path + "/c.sock", "query"], in: dir)
        #expect(r3.status == 1)
        #expect(r3.stderr.contains("give only one of"))
    }
}

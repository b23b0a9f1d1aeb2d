// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Glibc
import Testing

private let MiB: UInt64 = 1 << 20

/// Protocol rule 5 in `balloonctl serve`: a FRAMES_INFLATED read longer than
/// half the guest's grace time after the reporting daemon's last sign of
/// life is freed only after a probe (`frames-ack` naming the lifetime)
/// succeeds; if a new lifetime refuses the probe, the report is abandoned
/// and the session starts over. A fake guest with a 100 ms grace time: every
/// report it sends 120 ms after its last reply needs a probe.
@Suite(.serialized) struct ServeLivenessTests {
    let exe = balloonctlPath()

    /// Lets the 100 ms grace pass for certain since the guest's last reply.
    private static func outlastGrace() { usleep(120_000) }

    private func startServe(_ dir: TempDir, _ gsock: String, _ csock: String, _ backend: ShmFile) -> Background {
        Background(exe, ["serve", "--unix", gsock, "--control", csock, "--memory-backend", backend.path, "--timeout", "5"],
                   in: dir, name: "serve")
    }

    @Test func aLateReportIsFreedOnlyAfterTheDaemonAnswersAProbe() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let backend = ShmFile(size: Int(8 * MiB))
        defer { backend.remove() }
        let gsock = dir.path + "/guest.sock", csock = dir.path + "/control.sock"
        let seen = Recorder()
        let atProbe = Recorder()  // what the backend looked like when the probe came
        let guest = try serveOnce(path: gsock) { g in
            g.instance = "aaaa"
            g.grace = .milliseconds(100)
            guard let fr = g.serveUntil(.setFrameReporting, recorder: seen) else { return }
            g.answer(fr)
            Self.outlastGrace()
            g.frames(.framesInflated, seq: 1, [[256, 512]])  // 2 MiB at 1 MiB
            guard let probe = g.serveUntil(.framesAck, recorder: seen) else { return }
            atProbe.add(backend.isFilled(MiB, Int(2 * MiB), with: 0xAB) ? "intact" : "punched")
            g.answer(probe)
            g.serveAll(recorder: seen)
        }
        let serve = startServe(dir, gsock, csock, backend)
        defer { _ = serve.terminate() }
        let status = waitForStatus(csock) { $0.punches == 1 }
        #expect(status?.bytesFreed == 2 * MiB, "\(serve.stderrSoFar)")
        #expect(atProbe.all == ["intact"], "serve punched before the daemon answered the probe")
        #expect(backend.isFilled(MiB, Int(2 * MiB), with: 0))
        // Probes (seq 0) until one is answered soon enough to act on, then the ack.
        let acks = seen.all.filter { $0.hasPrefix("frames-ack ") }
        let probes = acks.prefix { $0 == #"frames-ack {"seq":0,"instance":"aaaa"}"# }
        #expect(!probes.isEmpty && acks.dropFirst(probes.count).first == #"frames-ack {"seq":1,"instance":"aaaa"}"#, "\(acks)")
        _ = serve.terminate()
        guest.join()
    }

    @Test func aReportOfADaemonThatWasReplacedIsNeverFreed() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let backend = ShmFile(size: Int(8 * MiB))
        defer { backend.remove() }
        let gsock = dir.path + "/guest.sock", csock = dir.path + "/control.sock"
        let seen = Recorder()
        let guest = try serveOnce(path: gsock) { g in
            g.instance = "aaaa"
            g.grace = .milliseconds(100)
            guard let fr = g.serveUntil(.setFrameReporting, recorder: seen) else { return }
            g.answer(fr)
            Self.outlastGrace()
            g.frames(.framesInflated, seq: 1, [[256, 512]])
            g.frames(.framesDeflated, seq: 2, [[256, 512]])
            g.frames(.framesInflated, seq: 3, [[1024, 256]])
            // The daemon was killed and restarted behind the open connection.
            g.instance = "bbbb"
            guard let probe = g.serveUntil(.framesAck, recorder: seen) else { return }
            g.answer(probe)  // StaleInstance
            guard let again = g.serveUntil(.setFrameReporting, recorder: seen) else { return }
            g.answer(again)
            g.frames(.framesInflated, seq: 1, [[1536, 256]])  // the new lifetime's own report (6 MiB)
            g.serveAll(recorder: seen)
        }
        let serve = startServe(dir, gsock, csock, backend)
        defer { _ = serve.terminate() }
        let status = waitForStatus(csock) { $0.daemonRestarts == 1 && $0.punches == 1 }
        #expect(status?.bytesAbandoned == 3 * MiB, "\(serve.stderrSoFar)")
        #expect(status?.bytesFreed == MiB)
        #expect(status?.frameReporting == true)
        #expect(backend.isFilled(0, Int(6 * MiB), with: 0xAB), "a dead daemon's report was punched")
        #expect(backend.isFilled(6 * MiB, Int(MiB), with: 0))
        #expect(serve.stderrSoFar.contains("lifetime aaaa is gone"))
        let text = run(exe, ["--control", csock, "serve-status"], in: dir).stdout
        #expect(text.contains("guest daemon restarted 1 times") && text.contains("3 MiB reported by a daemon gone before serve acted: never freed"), "\(text)")
        let acks = seen.all.filter { $0.hasPrefix("frames-ack ") }
        #expect(acks.first == #"frames-ack {"seq":0,"instance":"aaaa"}"#, "\(acks)")
        #expect(acks.dropFirst().allSatisfy { $0.contains(#""instance":"bbbb""#) }, "\(acks)")
        _ = serve.terminate()
        guest.join()
    }

    @Test func aDaemonWithoutALifetimeIsServedAsBefore() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let backend = ShmFile(size: Int(8 * MiB))
        defer { backend.remove() }
        let gsock = dir.path + "/guest.sock", csock = dir.path + "/control.sock"
        let seen = Recorder()
        let guest = try serveOnce(path: gsock) { g in
            guard let fr = g.serveUntil(.setFrameReporting, recorder: seen) else { return }
            g.answer(fr)
            Self.outlastGrace()
            g.frames(.framesInflated, seq: 1, [[256, 512]])
            g.serveAll(recorder: seen)
        }
        let serve = startServe(dir, gsock, csock, backend)
        defer { _ = serve.terminate() }
        let status = waitForStatus(csock) { $0.punches == 1 }
        #expect(status?.bytesFreed == 2 * MiB, "\(serve.stderrSoFar)")
        #expect(seen.all.filter { $0.hasPrefix("frames-ack ") } == [#"frames-ack {"seq":1}"#])
        #expect(serve.stderrSoFar.contains("names no lifetime"))
        _ = serve.terminate()
        guest.join()
    }
}

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
    /// Lets the 100 ms grace pass for certain since the guest's last reply.
    private static func outlastGrace() { usleep(120_000) }

    /// The guest's side of every test's start: a daemon lifetime `instance`
    /// (nil: a daemon older than rule 5) with a 100 ms grace answers
    /// set-frame-reporting, then lets that sign of life go stale. false if
    /// serve never asked.
    private static func startReporting(_ g: FakeGuest, _ seen: Recorder, instance: String?) -> Bool {
        if let instance {
            g.instance = instance
            g.grace = .milliseconds(100)
        }
        guard let fr = g.serveUntil(.setFrameReporting, recorder: seen) else { return false }
        g.answer(fr)
        outlastGrace()
        return true
    }

    /// A fake guest running `script` (given the RAM file, to look at) and
    /// serve against it with an 8 MiB RAM file; torn down in order.
    final class Rig {
        let dir = TempDir()
        let backend = ShmFile(size: Int(8 * MiB))
        let seen = Recorder()
        var csock: String { dir.path + "/control.sock" }
        private var guest: TestThread?
        private var serve: Background?

        init(_ script: @escaping @Sendable (FakeGuest, Recorder, ShmFile) -> Void) throws {
            let gsock = dir.path + "/guest.sock"
            let (seen, backend) = (self.seen, self.backend)
            guest = try serveOnce(path: gsock) { g in script(g, seen, backend) }
            serve = Background(balloonctlPath(), ["serve", "--unix", gsock, "--control", csock, "--memory-backend", backend.path, "--timeout", "5"],
                               in: dir, name: "serve")
        }

        var log: String { serve?.stderrSoFar ?? "" }
        var acks: [String] { seen.all.filter { $0.hasPrefix("frames-ack ") } }
        func status(_ condition: (ServeStatus) -> Bool) -> ServeStatus? { waitForStatus(csock, condition) }

        deinit {
            _ = serve?.terminate()
            guest?.join()
            backend.remove()
            dir.remove()
        }
    }

    @Test func aLateReportIsFreedOnlyAfterTheDaemonAnswersAProbe() throws {
        let atProbe = Recorder()  // what the backend looked like when the probe came
        let rig = try Rig { g, seen, backend in
            guard Self.startReporting(g, seen, instance: "aaaa") else { return }
            g.frames(.framesInflated, seq: 1, [[256, 512]])  // 2 MiB at 1 MiB
            guard let probe = g.serveUntil(.framesAck, recorder: seen) else { return }
            atProbe.add(backend.isFilled(MiB, Int(2 * MiB), with: 0xAB) ? "intact" : "punched")
            g.answer(probe)
            g.serveAll(recorder: seen)
        }
        let status = rig.status { $0.punches == 1 }
        #expect(status?.bytesFreed == 2 * MiB, "\(rig.log)")
        #expect(atProbe.all == ["intact"], "serve punched before the daemon answered the probe")
        #expect(rig.backend.isFilled(MiB, Int(2 * MiB), with: 0))
        // Probes (seq 0) until one is answered soon enough to act on, then the ack.
        let acks = rig.acks
        let probes = acks.prefix { $0 == #"frames-ack {"seq":0,"instance":"aaaa"}"# }
        #expect(!probes.isEmpty && acks.dropFirst(probes.count).first == #"frames-ack {"seq":1,"instance":"aaaa"}"#, "\(acks)")
    }

    @Test func aReportOfADaemonThatWasReplacedIsNeverFreed() throws {
        let rig = try Rig { g, seen, _ in
            guard Self.startReporting(g, seen, instance: "aaaa") else { return }
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
        let status = rig.status { $0.daemonRestarts == 1 && $0.punches == 1 }
        #expect(status?.bytesAbandoned == 3 * MiB, "\(rig.log)")
        #expect(status?.bytesFreed == MiB)
        #expect(status?.frameReporting == true)
        #expect(rig.backend.isFilled(0, Int(6 * MiB), with: 0xAB), "a dead daemon's report was punched")
        #expect(rig.backend.isFilled(6 * MiB, Int(MiB), with: 0))
        #expect(rig.log.contains("lifetime aaaa is gone"))
        let text = run(balloonctlPath(), ["--control", rig.csock, "serve-status"], in: rig.dir).stdout
        #expect(text.contains("guest daemon restarted 1 times") && text.contains("3 MiB reported by a daemon gone before serve acted: never freed"), "\(text)")
        #expect(rig.acks.first == #"frames-ack {"seq":0,"instance":"aaaa"}"#, "\(rig.acks)")
        #expect(rig.acks.dropFirst().allSatisfy { $0.contains(#""instance":"bbbb""#) }, "\(rig.acks)")
    }

    @Test func aDaemonWithoutALifetimeIsServedAsBefore() throws {
        let rig = try Rig { g, seen, _ in
            guard Self.startReporting(g, seen, instance: nil) else { return }
            g.frames(.framesInflated, seq: 1, [[256, 512]])
            g.serveAll(recorder: seen)
        }
        let status = rig.status { $0.punches == 1 }
        #expect(status?.bytesFreed == 2 * MiB, "\(rig.log)")
        #expect(rig.acks == [#"frames-ack {"seq":1}"#])
        #expect(rig.log.contains("names no lifetime"))
    }
}

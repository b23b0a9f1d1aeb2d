// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Glibc
import Testing

private let MiB: UInt64 = 1 << 20

/// `balloonctl serve --free-memory-reporting`: the command after frame
/// reporting, and the bytes held above the desired target counted as the
/// free-memory mode's.
@Suite(.serialized) struct ServeFreeMemoryTests {
    let exe = balloonctlPath()

    @Test func asksForTheModeAfterFrameReportingAndCountsWhatItReturned() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let backend = ShmFile(size: Int(64 * MiB))
        defer { backend.remove() }
        let gsock = dir.path + "/guest.sock", csock = dir.path + "/control.sock"
        let seen = Recorder()
        let guest = try serveOnce(path: gsock) { g in
            guard let fr = g.serveUntil(.setFrameReporting, recorder: seen) else { return }
            g.answer(fr)
            guard let fm = g.serveUntil(.setFreeMemoryReporting, recorder: seen) else { return }
            #expect(fm.arguments["enabled"] == .bool(true))
            g.answer(fm)
            guard let q = g.serveUntil(.query, recorder: seen) else { return }
            g.answer(q)
            guard let st = g.serveUntil(.setTarget, recorder: seen) else { return }
            g.answer(st)  // --target 2M
            // 2 MiB for the host's target, then 3 MiB more: the mode's.
            g.frames(.framesInflated, seq: 1, [[256, 512]])
            guard let a1 = g.serveUntil(.framesAck, recorder: seen) else { return }
            g.answer(a1)
            g.frames(.framesInflated, seq: 2, [[1024, 768]])
            guard let a2 = g.serveUntil(.framesAck, recorder: seen) else { return }
            g.answer(a2)
            guard let info = g.serveUntil(.info, recorder: seen) else { return }
            g.answer(info)
        }
        let serve = Background(exe, [
            "serve", "--unix", gsock, "--control", csock, "--target", "2M", "--memory-backend", backend.path,
            "--free-memory-reporting", "--timeout", "5",
        ], in: dir, name: "serve")
        defer { _ = serve.terminate() }
        let status = waitForStatus(csock) { $0.punches == 2 }
        #expect(status?.freeMemoryReporting == true, "\(serve.stderrSoFar)")
        #expect(status?.freeMemoryBytesFreed == 3 * MiB)
        #expect(status?.bytesFreed == 5 * MiB)
        let json = run(exe, ["--control", csock, "--json", "serve-status"], in: dir)
        #expect(json.stdout.contains("\"free-memory-bytes-freed\":3145728"), "\(json.stdout)")
        _ = run(exe, ["--control", csock, "info"], in: dir)
        guest.join()
        let order = seen.all.map { $0.split(separator: " ").first.map(String.init) ?? "" }
        #expect(order.prefix(3) == ["sync", "set-frame-reporting", "set-free-memory-reporting"])
    }

    @Test func theFlagNeedsAMemoryBackend() {
        let dir = TempDir()
        defer { dir.remove() }
        let r = run(exe, ["serve", "--unix", dir.path + "/g.sock", "--control", dir.path + "/c.sock", "--free-memory-reporting"], in: dir)
        #expect(r.status != 0)
        #expect(r.stderr.contains("--free-memory-reporting, --populate-on-deflate and --prefault need --memory-backend"))
        let p = run(exe, ["serve", "--unix", dir.path + "/g.sock", "--control", dir.path + "/c.sock", "--populate-on-deflate"], in: dir)
        #expect(p.status != 0)
        #expect(p.stderr.contains("--populate-on-deflate and --prefault need --memory-backend"))
        let f = run(exe, ["serve", "--unix", dir.path + "/g.sock", "--control", dir.path + "/c.sock", "--memory-backend", dir.path + "/ram",
                          "--no-populate-on-deflate", "--prefault"], in: dir)
        #expect(f.status != 0)
        #expect(f.stderr.contains("--prefault maps what --populate-on-deflate allocates"))
    }
}

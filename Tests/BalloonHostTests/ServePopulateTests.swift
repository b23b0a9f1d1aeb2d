// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Testing

private let MiB: UInt64 = 1 << 20

/// serve allocates the backend again for frames the guest takes back, in
/// slices between events (the default): never a range the guest holds again,
/// and not at all with `--no-populate-on-deflate`.
@Suite(.serialized) struct ServePopulateTests {
    let exe = balloonctlPath()

    /// Each test's scratch: a directory with the guest's and the control
    /// socket's paths, and a 64 MiB RAM file on /dev/shm with its blocks
    /// before anything was punched.
    private struct Files {
        let dir = TempDir()
        let backend = ShmFile(size: Int(64 * MiB))
        let full: UInt64
        init() { full = backend.status().blocks }
        var gsock: String { dir.path + "/guest.sock" }
        var csock: String { dir.path + "/control.sock" }
        func remove() {
            backend.remove()
            dir.remove()
        }
    }

    private func line(_ name: GuestEvent.Name, seq: UInt64, _ ranges: [JSON]) -> String {
        Event(name.rawValue, data: ["seq": .uint(seq), "page-size": 4096, "ranges": .array(ranges)], timestamp: Canned.timestamp)
            .json.serialized() + "\n"
    }

    /// A guest that reports 2 MiB held from frame 256 (file offset 1 MiB) and
    /// then takes back the first 1 MiB of it.
    private func guestTakingBackAMiB(_ path: String) throws -> TestThread {
        let seen = Recorder()
        return try serveOnce(path: path) { g in
            guard let fr = g.serveUntil(.setFrameReporting, recorder: seen) else { return }
            g.answer(fr)
            g.frames(.framesInflated, seq: 1, [[256, 512]])
            guard let a1 = g.serveUntil(.framesAck, recorder: seen) else { return }
            g.answer(a1)
            g.frames(.framesDeflated, seq: 2, [[256, 256]])
            g.serveAll(recorder: seen)
        }
    }

    @Test func framesHeldAgainRightAfterADeflateStayFreed() throws {
        let files = Files()
        defer { files.remove() }
        let (dir, backend, full, gsock, csock) = (files.dir, files.backend, files.full, files.gsock, files.csock)
        let seen = Recorder()
        let all: JSON = [0, 12288]  // 48 MiB: two slices
        let guest = try serveOnce(path: gsock) { g in
            guard let fr = g.serveUntil(.setFrameReporting, recorder: seen) else { return }
            g.answer(fr)
            g.frames(.framesInflated, seq: 1, [all])
            guard let a1 = g.serveUntil(.framesAck, recorder: seen) else { return }
            g.answer(a1)
            // Taken back and held again in one read: serve queues the 48 MiB,
            // then must drop them from the queue before it punches again.
            g.write(line(.framesDeflated, seq: 2, [all]) + line(.framesInflated, seq: 3, [all]))
            g.serveAll(recorder: seen)
        }
        let serve = Background(exe, [
            "serve", "--unix", gsock, "--control", csock, "--memory-backend", backend.path, "--punch-rate", "1G", "--timeout", "5",
        ], in: dir, name: "serve")
        defer { _ = serve.terminate() }
        let status = waitForStatus(csock) { $0.punches == 2 && $0.framesHeld == 12288 }
        #expect(status != nil, "\(String(describing: serveStatus(csock))) \(serve.stderrSoFar)")
        // Another round trip: any slice still queued would have run by now.
        #expect(serveStatus(csock)?.bytesFreed == 96 * MiB)
        #expect(full - backend.status().blocks == 48 * MiB / 512, "\(String(describing: serveStatus(csock)))")
        #expect(backend.isFilled(48 * MiB, Int(16 * MiB), with: 0xAB))
        _ = serve.terminate()
        guest.join()
    }

    /// Switched off, the guest faults it in.
    @Test func switchedOffWhatTheGuestTookBackIsLeftToIt() throws {
        let files = Files()
        defer { files.remove() }
        let (dir, backend, full, gsock, csock) = (files.dir, files.backend, files.full, files.gsock, files.csock)
        let guest = try guestTakingBackAMiB(gsock)
        let serve = Background(exe, [
            "serve", "--unix", gsock, "--control", csock, "--memory-backend", backend.path, "--no-populate-on-deflate", "--timeout", "5",
        ], in: dir, name: "serve")
        defer { _ = serve.terminate() }
        let status = waitForStatus(csock) { $0.framesHeld == 256 }
        #expect(status != nil, "\(String(describing: serveStatus(csock))) \(serve.stderrSoFar)")
        #expect(serveStatus(csock)?.bytesPopulated == 0)
        #expect(full - backend.status().blocks == 2 * MiB / 512)
        _ = serve.terminate()
        guest.join()
    }

    /// With a process mapping the RAM file (QEMU), what was allocated again is
    /// mapped into it too, unless `--no-prefault`; nothing else is.
    @Test(arguments: [true, false]) func whatTheGuestTookBackIsMappedIntoQEMU(prefault: Bool) throws {
        let files = Files()
        defer { files.remove() }
        let (dir, backend, gsock, csock) = (files.dir, files.backend, files.gsock, files.csock)
        let qemu = try #require(RamMapper(backend.path, in: dir))
        defer { qemu.stop() }
        let guest = try guestTakingBackAMiB(gsock)
        let serve = Background(exe, [
            "serve", "--unix", gsock, "--control", csock, "--memory-backend", backend.path, "--timeout", "5",
        ] + (prefault ? [] : ["--no-prefault"]), in: dir, name: "serve")
        defer { _ = serve.terminate() }
        let status = waitForStatus(csock) { $0.framesHeld == 256 && $0.bytesPopulated == MiB }
        #expect(status != nil, "\(String(describing: serveStatus(csock))) \(serve.stderrSoFar)")
        #expect(serveStatus(csock)?.bytesPrefaulted == (prefault ? MiB : 0))
        #expect(try qemu.present(MiB, MiB).allSatisfy { $0 == prefault })
        // Still freed, and never read: not mapped (past the kernel's 64 KiB fault-around).
        #expect(try qemu.present(2 * MiB + (64 << 10), MiB - (64 << 10)).allSatisfy { !$0 })
        #expect(backend.isFilled(MiB, Int(MiB), with: 0) && backend.isFilled(3 * MiB, Int(MiB), with: 0xAB))
        _ = serve.terminate()
        guest.join()
    }

    /// balloon-hostd's `PopulateOnDeflate=below-target`: what the guest takes
    /// back on its own, leaving its balloon below the agent's target, is
    /// allocated again; what it releases toward a lower target is not. The
    /// guest holds 2 MiB and takes 1 MiB back: below a 2 MiB target, at a 1 MiB one.
    @Test(arguments: [("2M", MiB), ("1M", 0)])
    func theAgentAllocatesOnlyWhatTheGuestTakesBackBelowItsTarget(target: String, populated: UInt64) throws {
        let files = Files()
        defer { files.remove() }
        let (dir, backend, full, gsock, csock) = (files.dir, files.backend, files.full, files.gsock, files.csock)
        mkdir(dir.path + "/g", 0o755)
        try "[Host]\nControl=\(csock)\nGuestDirectory=\(dir.path)/g\n[Discovery]\nLibvirt=no\n"
            .write(toFile: dir.path + "/h.conf", atomically: false, encoding: .utf8)
        try "[Guest]\nChannel=unix:\(gsock)\nMemoryBackend=\(backend.path)\nPolicy=manual\nTarget=\(target)\nPopulateOnDeflate=below-target\n"
            .write(toFile: dir.path + "/g/g.conf", atomically: false, encoding: .utf8)
        let guest = try guestTakingBackAMiB(gsock)
        let hostd = Background(hostdPath(), ["--config", dir.path + "/h.conf"], in: dir, name: "balloon-hostd")
        defer { _ = hostd.terminate() }
        var session: ServeStatus?
        let settled = waitFor(timeout: .seconds(10), interval: .milliseconds(20)) { () -> ServeStatus? in
            let r = run(exe, ["guest-status", "g", "--agent", csock, "--json"], in: dir)
            session = try? GuestStatusReply(json: JSON.parse(r.stdout)).session
            return session.flatMap { $0.framesHeld == 256 && $0.bytesPopulated == populated ? $0 : nil }
        }
        #expect(settled != nil, "\(String(describing: session)) \(hostd.stderrSoFar)")
        // Freed 2 MiB, 1 MiB of it allocated again or not.
        #expect(full - backend.status().blocks == (2 * MiB - populated) / 512)
        _ = hostd.terminate()
        guest.join()
    }
}

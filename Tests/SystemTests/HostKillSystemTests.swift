// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// The host (balloon-hostd, then balloonctl serve) SIGKILLed while the
/// guest's balloon moves — frames reported and not yet acknowledged — and
/// restarted. A real local balloond is the guest; its "RAM" is a sparse file
/// on /dev/shm mapped linearly over this machine's physical frames
/// (FaultSupport.swift), so a frame's page in the file shows whether it was
/// punched. Memory the guest takes back is written with a pattern, as a guest
/// would use it; no host, old or restarted, may punch it afterwards. The
/// restarted host's ledger is the guest's fresh report: exactly the balloon.
/// Balloons ≤ 48 MiB; the guest's grace time is 1 s.
@Suite(.serialized) struct HostKillSystem {
    typealias AgentBox = HostAgentSystem.AgentBox
    static let taken: UInt8 = 0xA5

    final class Host {
        let tool: ToolProcess
        let client: RawClient
        let agent: Bool

        init(agent: Bool, box: AgentBox, guest: Sandbox, ram: SparseRamFile) throws {
            self.agent = agent
            let control = agent ? box.control : box.dir + "/serve.control"
            tool = agent
                ? try ToolProcess("balloon-hostd", ["--config", box.config])
                : try ToolProcess("balloonctl", ["serve", "--unix", guest.socket, "--control", control, "--memory-backend", ram.path])
            // A killed host leaves its socket file: the client retries until the new one listens.
            let tool = tool
            #expect(waitUntil { FileManager.default.fileExists(atPath: control) }, "\(tool.log)")
            client = try RawClient(socket: control)
            try client.sync()
            if agent { try client.value("select-guest", ["name": "g"]) }
            #expect(waitUntil { (try? status())?.guestConnected == true }, "\(tool.log)")
        }

        func status() throws -> ServeStatus {
            agent ? try client.guestStatus("g").session : try ServeStatus(json: try client.value("serve-status"))
        }

        /// Waits until the host holds exactly `bytes` of reported frames (its ledger).
        func holds(_ bytes: UInt64) -> Bool {
            waitUntil(timeout: .seconds(30)) { (try? status()).map { $0.frameReporting && $0.bytesHeld == bytes } ?? false }
        }

        func setTarget(_ bytes: UInt64) throws {
            var events: [Event] = []
            try client.call("set-target", ["target": .uint(bytes)], events: &events)
            _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        }

        /// SIGKILL, as the OOM killer or a crash would end it.
        func kill() {
            Glibc.kill(tool.pid, SIGKILL)
            #expect(tool.waitForExit() != nil)
        }
    }

    @Test(arguments: [true, false])
    func killedMidPunchThenRestarted(agent: Bool) throws {
        let guest = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket,
                                       environment: ["BALLOOND_TEST_FRAME_GRACE_MS": "1000"])
        let ram = try SparseRamFile()
        let box = try AgentBox()
        try box.guest("g", "[Guest]\nChannel=unix:\(guest.socket)\nPolicy=manual\nMemoryBackend=\(ram.path)\n")
        func start() throws -> Host { try Host(agent: agent, box: box, guest: guest, ram: ram) }
        func settled(_ bytes: UInt64) -> Bool { waitUntil(timeout: .seconds(30)) { balloonLocked(daemon.pid) == bytes } }

        var host = try start()
        try host.setTarget(32 * MiB)
        #expect(host.holds(32 * MiB), "\(host.tool.log)")
        let held1 = lockedFrames(daemon.pid)
        #expect(held1.count == Int(32 * MiB / 4096))
        try host.setTarget(16 * MiB)
        #expect(settled(16 * MiB))
        let held2 = lockedFrames(daemon.pid)
        var takenBack = held1.subtracting(held2)
        #expect(takenBack.count == Int(16 * MiB / 4096))
        ram.fill(takenBack, with: Self.taken)  // the guest uses them again
        ram.fill(held2, with: 0x5A)  // not yet freed: the restarted host must punch them

        // Killed while the guest inflates to 48 MiB and reports the new chunks.
        try host.client.call("set-target", ["target": .uint(48 * MiB)])
        host.kill()
        #expect(waitUntil { daemon.log.contains("frame reporting off: the host went away") }, "\(daemon.log)")
        #expect(settled(48 * MiB), "\(daemon.log)")
        host = try start()
        #expect(host.holds(48 * MiB), "\(host.tool.log)")
        let held3 = lockedFrames(daemon.pid)
        #expect(held3.count == Int(48 * MiB / 4096))
        #expect(waitUntil { ram.frames(held3, notAll: 0).isEmpty }, "the restarted host did not punch the fresh report")
        #expect(ram.frames(takenBack.subtracting(held3), notAll: Self.taken).isEmpty, "memory the guest took back was punched")

        // Killed while the guest deflates to 8 MiB (FRAMES_DEFLATED not acknowledged),
        // restarted at once, inside the guest's grace time.
        try host.client.call("set-target", ["target": .uint(8 * MiB)])
        host.kill()
        host = try start()
        #expect(settled(8 * MiB), "\(daemon.log)")
        // The fresh report is the balloon, not the memory waiting out its grace time.
        #expect(host.holds(8 * MiB), "\(host.tool.log)")
        let held4 = lockedFrames(daemon.pid)
        takenBack.formUnion(held3.subtracting(held4))
        takenBack.subtract(held4)
        ram.fill(takenBack, with: Self.taken)

        // The balloon moves on under the restarted host: it punches the new
        // chunks and nothing the guest took back.
        try host.setTarget(24 * MiB)
        #expect(host.holds(24 * MiB), "\(host.tool.log)")
        let held5 = lockedFrames(daemon.pid)
        #expect(waitUntil { ram.frames(held5, notAll: 0).isEmpty })
        #expect(ram.frames(takenBack.subtracting(held5), notAll: Self.taken).isEmpty, "memory the guest took back was punched")
        #expect(try host.client.value("query")["actual"]?.uint64 == 24 * MiB)
        #expect(balloonLocked(daemon.pid) == 24 * MiB)
        let status = try host.status()
        #expect(status.punchFailures == 0 && status.refused.total == 0, "\(status.json)")
        kill(host.tool.pid, SIGTERM)
        #expect(host.tool.waitForExit() == 0, "\(host.tool.log)")
    }

    /// The guest daemon SIGKILLed right after it reported a deflate
    /// (FRAMES_DEFLATED on its way, serve's ack not yet back), and restarted
    /// on the same socket: serve re-syncs, re-applies its target and punches
    /// the new daemon's fresh report. The frames the killed daemon held went
    /// back to the kernel with its holders and are used again: none of them
    /// is punched afterwards. (A local daemon: a real guest's RAM would need a
    /// QEMU boot per kill; the frames here are as real, and so are the punches.)
    @Test func guestKilledBeforeTheAckThenRestarted() throws {
        let guest = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        var daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket)
        let ram = try SparseRamFile()
        let box = try AgentBox()
        let host = try Host(agent: false, box: box, guest: guest, ram: ram)
        try host.setTarget(32 * MiB)
        #expect(host.holds(32 * MiB), "\(host.tool.log)")
        let held1 = lockedFrames(daemon.pid)
        #expect(held1.count == Int(32 * MiB / 4096))
        try host.client.call("set-target", ["target": .uint(16 * MiB)])
        daemon.signal(SIGKILL)
        #expect(daemon.waitForExit() != nil)
        ram.fill(held1, with: Self.taken)  // back with the kernel, used again

        daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket)
        #expect(host.holds(16 * MiB), "\(host.tool.log)\n\(daemon.log)")
        #expect(waitUntil { balloonLocked(daemon.pid) == 16 * MiB })
        let held2 = lockedFrames(daemon.pid)
        #expect(waitUntil { ram.frames(held2, notAll: 0).isEmpty }, "serve did not punch the new daemon's report")
        #expect(ram.frames(held1.subtracting(held2), notAll: Self.taken).isEmpty, "a frame the guest used again was punched")
        let status = try host.status()
        #expect(status.reconnects == 1 && status.punchFailures == 0 && status.refused.total == 0, "\(status.json)")
    }
}

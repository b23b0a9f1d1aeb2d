// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// Signals every millisecond — SIGHUP (reload) and ignored noise (SIGWINCH,
/// SIGURG, SIGCONT) — at balloond and balloon-hostd while the guest's balloon
/// inflates to 128 MiB with frame reporting on, and while a guest file added
/// meanwhile is picked up by one of the reloads. Nothing is lost: the target
/// is reached exactly, the guest's session is never re-established (a reload
/// leaves unchanged guests alone), the new guest arrives, every frame is held.
/// (SIGUSR1's default action ends a process; neither daemon claims it.)
@Suite(.serialized) struct SignalStormSystem {
    typealias AgentBox = HostAgentSystem.AgentBox

    /// A thread sending `signals` to `pids` about every millisecond until stopped.
    final class Storm: @unchecked Sendable {
        private let lock = NSLock()
        private var running = true
        private var rounds = 0
        private let done = DispatchSemaphore(value: 0)

        init(pids: [Int32], signals: [Int32]) {
            let thread = Thread { [self] in
                while lock.withLock({ running }) {
                    for pid in pids { for s in signals { kill(pid, s) } }
                    lock.withLock { rounds += 1 }
                    usleep(1000)  // the storm's pace, not a wait for a state
                }
                done.signal()
            }
            thread.start()
        }

        var sent: Int { lock.withLock { rounds } }

        /// Stops and returns the rounds sent.
        func stop() -> Int {
            lock.withLock { running = false }
            done.wait()
            return sent
        }
    }

    @Test func inflateAndReloadUnderASignalStorm() throws {
        let box = try AgentBox()
        let g = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let h = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let dg = try DaemonProcess(arguments: ["--config", g.configPath], waitForSocket: g.socket)
        let dh = try DaemonProcess(arguments: ["--config", h.configPath], waitForSocket: h.socket)
        let ram = try SparseRamFile()
        try box.guest("g", "[Guest]\nChannel=unix:\(g.socket)\nPolicy=manual\nMemoryBackend=\(ram.path)\n")
        let agent = try ToolProcess("balloon-hostd", ["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        #expect(waitUntil { (try? client.guestStatus("g"))?.session.frameReporting == true }, "\(agent.log)")
        try client.value("select-guest", ["name": "g"])

        let storm = Storm(pids: [agent.pid, dg.pid, dh.pid], signals: [SIGHUP, SIGWINCH, SIGURG, SIGCONT])
        var events: [Event] = []
        let before = storm.sent
        try client.call("set-target", ["target": .uint(128 * MiB)], events: &events)
        // A guest file written during the storm: some reload adds it.
        try box.guest("h", "[Guest]\nChannel=unix:\(h.socket)\nPolicy=manual\nTarget=16M\n")
        _ = try client.waitForEvent("TARGET_REACHED", timeout: 120, into: &events)
        #expect(storm.sent > before, "no signal arrived during the inflate")
        #expect(waitUntil(timeout: .seconds(30)) { balloonLocked(dh.pid) == 16 * MiB }, "\(agent.log)")
        #expect(try GuestListReply(json: try client.value("list-guests")).guests.map(\.name) == ["g", "h"])
        #expect(waitUntil { storm.sent >= 200 })
        _ = storm.stop()

        #expect(try client.value("query")["actual"]?.uint64 == 128 * MiB)
        #expect(balloonLocked(dg.pid) == 128 * MiB && balloonLocked(dh.pid) == 16 * MiB)
        let status = try client.guestStatus("g").session
        #expect(status.guestConnected && status.reconnects == 0, "\(status.json)\n\(agent.log)")
        #expect(waitUntil { (try? client.guestStatus("g"))?.session.bytesHeld == 128 * MiB }, "\(agent.log)")
        #expect(status.refused.total == 0 && status.lastError == nil, "\(status.json)")
        for d in [dg, dh] {
            d.signal(SIGTERM)
            #expect(d.waitForExit() == 0, "\(d.log)")
        }
        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0, "\(agent.log)")
    }
}

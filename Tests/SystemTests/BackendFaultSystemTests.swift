// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// A guest's RAM backend failing under balloon-hostd, beside a healthy guest:
/// one file made immutable after the agent opened it (every punch fails with
/// EPERM, as on a read-only or failing device), one removed before the start
/// (the guest is not added, the log says why), one removed while in use (the
/// agent keeps its descriptor, as QEMU does: punches still free the memory).
/// Each error belongs to its guest (log line, guest-status last-error,
/// punch-failures, memory-backend-state, shown by `balloonctl --guest N
/// status`); the other guests and the agent carry on. Balloons ≤ 16 MiB.
@Suite(.serialized) struct BackendFaultSystem {
    typealias AgentBox = HostAgentSystem.AgentBox

    static func chattr(_ flag: String, _ path: String) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/chattr")
        p.arguments = [flag, path]
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    @Test func failingRemovedAndMissingBackends() throws {
        let box = try AgentBox()
        let sandboxes = try (0..<3).map { _ in try Sandbox(config: "[Balloon]\nChunkSize=8M\n") }
        let daemons = try sandboxes.map { try DaemonProcess(arguments: ["--config", $0.configPath], waitForSocket: $0.socket) }
        let failing = try SparseRamFile(), removed = try SparseRamFile()
        let missing = box.dir + "/no-such-ram-file"
        try box.guest("failing", "[Guest]\nChannel=unix:\(sandboxes[0].socket)\nPolicy=manual\nMemoryBackend=\(failing.path)\n")
        try box.guest("removed", "[Guest]\nChannel=unix:\(sandboxes[1].socket)\nPolicy=manual\nMemoryBackend=\(removed.path)\n")
        try box.guest("missing", "[Guest]\nChannel=unix:\(sandboxes[2].socket)\nPolicy=manual\nMemoryBackend=\(missing)\n")
        let agent = try ToolProcess("balloon-hostd", ["--config", box.config])
        #expect(waitUntil { agent.log.contains("missing: \(box.guests)/missing.conf: cannot open the memory backend \(missing)") }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        #expect(waitUntil { (try? GuestListReply(json: try client.value("list-guests")))?.guests.filter(\.connected).map(\.name) == ["failing", "removed"] },
                "\(agent.log)")
        #expect(try client.guestStatus("removed").session.memoryBackendState == BackendState(.ok))

        // The agent has both files open; now one fails and one goes.
        #expect(Self.chattr("+i", failing.path))
        defer { _ = Self.chattr("-i", failing.path) }
        unlink(removed.path)
        for name in ["failing", "removed"] {
            try client.value("select-guest", ["name": .string(name)])
            var events: [Event] = []
            try client.call("set-target", ["target": .uint(16 * MiB)], events: &events)
            _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        }
        #expect(waitUntil { (try? client.guestStatus("failing"))?.session.punchFailures ?? 0 > 0 }, "\(agent.log)")
        let bad = try client.guestStatus("failing").session
        #expect(bad.lastError?.hasPrefix("punch failed: fallocate") == true, "\(bad.json)")
        #expect(bad.lastError?.contains(failing.path) == true && bad.punches == 0 && bad.bytesFreed == 0, "\(bad.json)")
        #expect(agent.log.contains("failing: punch failed: fallocate"), "\(agent.log)")
        // Its state says why, with the errno (EPERM: immutable), and balloonctl shows it.
        let state = try #require(bad.memoryBackendState, "\(bad.json)")
        #expect(state.condition == .readOnly && state.lastPunchErrno == EPERM, "\(bad.json)")
        #expect(state.lastPunchError?.contains("fallocate(PUNCH_HOLE) \(failing.path)") == true, "\(bad.json)")
        let shown = try MetricsSystem.run(productsDirectory + "/balloonctl", ["--agent", box.control, "--guest", "failing", "status"])
        #expect(shown.status == 0 && shown.output.contains("backend state    read-only (last punch: fallocate(PUNCH_HOLE) \(failing.path)"),
                "\(shown.output)")
        #expect(waitUntil { (try? client.guestStatus("removed"))?.session.bytesFreed == 16 * MiB }, "\(agent.log)")
        let good = try client.guestStatus("removed").session
        #expect(good.lastError == nil && good.punchFailures == 0, "\(good.json)")
        // Removed while in use: punches still work, and the state says the path is gone.
        #expect(good.memoryBackendState == BackendState(.missing), "\(good.json)")
        let listed = try MetricsSystem.run(productsDirectory + "/balloonctl", ["--agent", box.control, "guest-status", "removed"])
        #expect(listed.output.contains("backend state    missing"), "\(listed.output)")
        // The failing guest's balloon still works: the guest was acknowledged and keeps its balloon.
        #expect(balloonLocked(daemons[0].pid) == 16 * MiB && balloonLocked(daemons[1].pid) == 16 * MiB)
        #expect(balloonLocked(daemons[2].pid) == 0)
        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0, "\(agent.log)")
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// balloon-hostd's QMP socket (`[Guest] QMP=`, docs/qmp.md) with a real
/// local balloond as its guest, driven by QEMU's own Python client
/// (qemu.qmp, from PyPI: scripts/install-deps.sh) running
/// tests/qmp/qmp_client.py: negotiation, `balloon` (64 MiB of balloon),
/// query-balloon with Proxmox's fields, guest-stats and BALLOON_CHANGE.
/// Then reload: the socket goes with the guest file's `QMP=` line.
@Suite(.serialized) struct QMPSystem {
    typealias AgentBox = HostAgentSystem.AgentBox
    typealias AgentProcess = HostAgentSystem.AgentProcess

    static var hasClient: Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import qemu.qmp"]
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    @Test(.enabled(if: QMPSystem.hasClient, "needs the qemu.qmp Python package (scripts/install-deps.sh)"))
    func qemuClientAgainstARealGuest() throws {
        let box = try AgentBox()
        let guest = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket)
        let qmpPath = box.dir + "/g.qmp"
        let file = "[Guest]\nChannel=unix:\(guest.socket)\nPolicy=manual\n"
        try box.guest("g", file + "QMP=\(qmpPath)\n")

        let agent = try AgentProcess(["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: qmpPath) }, "\(agent.log)")
        let mode = (try FileManager.default.attributesOfItem(atPath: qmpPath)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600)

        let client = Process()
        let out = Pipe()
        let err = Pipe()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = ["python3", RepoFiles.url("tests/qmp/qmp_client.py").path, qmpPath, "64"]
        client.standardOutput = out
        client.standardError = err
        try client.run()
        // The pipes are drained after the exit: the script writes a few KiB at most.
        #expect(waitUntil(timeout: .seconds(60)) { !client.isRunning }, "\(agent.log)")
        if client.isRunning { client.terminate(); client.waitUntilExit() }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(client.terminationStatus == 0, "\(stderr)\n\(agent.log)")

        let summary = try JSONSerialization.jsonObject(with: stdout) as? [String: Any]
        let info = summary?["query-balloon"] as? [String: Any]
        let ram = (info?["max_mem"] as? NSNumber)?.uint64Value ?? 0
        #expect(ram > 0)
        #expect((info?["actual"] as? NSNumber)?.uint64Value == ram - 64 * MiB)
        let events = summary?["events"] as? [[String: Any]] ?? []
        #expect(!events.isEmpty)
        let commands = summary?["commands"] as? [String] ?? []
        #expect(commands.contains("balloon") && commands.contains("query-balloon"))
        // The balloon is real: balloond locked 64 MiB.
        #expect(waitUntil { balloonLocked(daemon.pid) == 64 * MiB }, "\(daemon.log)")

        // Reload without QMP=: the socket goes, the guest stays.
        try box.guest("g", file)
        kill(agent.pid, SIGHUP)
        #expect(waitUntil { !FileManager.default.fileExists(atPath: qmpPath) }, "\(agent.log)")
        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0, "\(agent.log)")
    }
}

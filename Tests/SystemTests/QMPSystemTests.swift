// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
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

    @Test func qemuClientAgainstARealGuest() throws {
        // Not skipped without it: make test installs it (scripts/install-deps.sh).
        try #require(QMPSystem.hasClient, "the qemu.qmp Python package is missing: run scripts/install-deps.sh")
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
        // And back: a reload that adds QMP= opens it again, greeting as before.
        try box.guest("g", file + "QMP=\(qmpPath)\n")
        kill(agent.pid, SIGHUP)
        #expect(waitUntil { FileManager.default.fileExists(atPath: qmpPath) }, "\(agent.log)")
        let again = try RawClient(socket: qmpPath)
        guard case let .line(greeting)? = try again.nextItem() else { Issue.record("no greeting after the reload"); return }
        #expect(try JSON.parse(greeting)["QMP"] != nil)
        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0, "\(agent.log)")
    }

    /// The answer to one command (events before it skipped), over a raw socket.
    func answer(_ client: RawClient, _ command: String) throws -> JSON? {
        try client.send(command + "\r\n")
        while let item = try client.nextItem() {
            guard case let .line(bytes) = item else { continue }
            let value = try JSON.parse(bytes)
            if value["return"] != nil || value["error"] != nil { return value }
        }
        return nil
    }

    /// `balloonctl serve --qmp`: the same server for serve's one guest,
    /// spoken to by hand (a greeting, CRLF lines).
    @Test func serveSpeaksQMPToo() throws {
        let guest = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket)
        let qmpPath = guest.dir + "/serve.qmp"
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: productsDirectory + "/balloonctl")
        serve.arguments = ["serve", "--unix", guest.socket, "--control", guest.dir + "/control", "--qmp", qmpPath]
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer { if serve.isRunning { serve.terminate(); serve.waitUntilExit() } }
        #expect(waitUntil { FileManager.default.fileExists(atPath: qmpPath) })
        let client = try RawClient(socket: qmpPath)
        guard case let .line(greeting)? = try client.nextItem() else { Issue.record("no greeting"); return }
        #expect(try JSON.parse(greeting)["QMP"]?["capabilities"] == [])
        #expect(try answer(client, #"{"execute": "query-balloon", "id": 1}"#)?["error"]?["class"] == "CommandNotFound")
        #expect(try answer(client, #"{"execute": "qmp_capabilities"}"#) == ["return": [:]])
        // The guest's RAM is its MemTotal, known with its first STATS.
        var ram: UInt64 = 0
        #expect(try waitUntil {
            ram = try answer(client, #"{"execute": "query-balloon"}"#)?["return"]?["max_mem"]?.uint64 ?? 0
            return ram > 0
        })
        #expect(try answer(client, #"{"execute": "balloon", "arguments": {"value": \#(ram - 16 * MiB)}}"#) == ["return": [:]])
        #expect(waitUntil { balloonLocked(daemon.pid) == 16 * MiB }, "\(daemon.log)")
        #expect(try waitUntil { try answer(client, #"{"execute": "query-balloon"}"#)?["return"]?["actual"]?.uint64 == ram - 16 * MiB })
    }
}

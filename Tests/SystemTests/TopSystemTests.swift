// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// `balloonctl top` against a real balloon-hostd with a real balloond: the
/// `--json` snapshot, and frames when standard output is not a terminal.
@Suite(.serialized) struct TopSystem {
    /// Runs the built balloonctl; its exit status and standard output.
    func balloonctl(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/balloonctl")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func jsonSnapshotAndFramesOffATerminal() throws {
        let box = try HostAgentSystem.AgentBox()
        let sandbox = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let daemon = try DaemonProcess(arguments: ["--config", sandbox.configPath], waitForSocket: sandbox.socket)
        try box.guest("vm1", "[Guest]\nChannel=unix:\(sandbox.socket)\nPolicy=manual\nTarget=16M\n")
        let agent = try HostAgentSystem.AgentProcess(["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        #expect(waitUntil(timeout: .seconds(30)) {
            (try? GuestListReply(json: try client.value("list-guests")).guests.first?.actual) == 16 * MiB
        }, "\(agent.log)")
        #expect(balloonLocked(daemon.pid) == 16 * MiB)

        // --json: one snapshot, the rows of list-guests and the policy.
        let json = try balloonctl(["top", "--agent", box.control, "--json", "--sort", "actual"])
        #expect(json.status == 0, "\(json.output)")
        let snapshot = try JSON.parse(json.output)
        let rows = try GuestListReply(json: snapshot).guests
        #expect(rows.map(\.name) == ["vm1"] && rows.first?.actual == 16 * MiB && rows.first?.connected == true)
        #expect(snapshot["policy"]?["mode"] == .string("manual"))
        #expect(snapshot["sort"] == .string("actual"))

        // Standard output is a pipe: one frame, no escape sequences.
        let frame = try balloonctl(["top", "--agent", box.control])
        #expect(frame.status == 0, "\(frame.output)")
        let lines = frame.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first?.hasPrefix("balloon-hostd: 1 guest (1 up), freed 0 B, policy manual") == true, "\(frame.output)")
        #expect(lines.contains { $0.hasPrefix("NAME ") && $0.hasSuffix("LAST CHANGE") })
        #expect(lines.contains { $0.hasPrefix("vm1 ") && $0.contains("16 MiB") && $0.contains(" up ") }, "\(frame.output)")
        #expect(!frame.output.contains("\u{1B}"))
        #expect(!frame.output.contains("keys:"))

        // --iterations: that many frames, a blank line between them.
        let two = try balloonctl(["top", "--agent", box.control, "--iterations", "2", "--interval", "0.1"])
        #expect(two.status == 0 && two.output.components(separatedBy: "balloon-hostd: ").count == 3, "\(two.output)")

        let bad = try balloonctl(["top", "--agent", box.control, "--sort", "cpu"])
        #expect(bad.status == 1 && bad.output.contains("not a column"), "\(bad.output)")

        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0)
        _ = daemon
    }
}

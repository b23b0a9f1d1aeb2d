// SPDX-License-Identifier: Apache-2.0
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// balloon-hostd under a stand-in for systemd: a real datagram socket as
/// NOTIFY_SOCKET and WATCHDOG_USEC in its environment, as a Type=notify unit
/// with WatchdogSec= gives them. The static binary speaks the protocol itself
/// (no libsystemd), so this is where it is checked end to end.
@Suite(.serialized) struct HostdNotify {
    /// systemd's side of the notify socket.
    final class NotifySink {
        let path: String
        let fd: Int32

        init(path: String) throws {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            try #require(fd >= 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
            }
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            try #require(r == 0)
        }

        /// Messages until one satisfies `done` (included), or nil when none came
        /// within 10 s of the previous one.
        func receive(until done: (String) -> Bool) -> [String]? {
            var seen: [String] = []
            while true {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 10_000) == 1 else { return nil }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n >= 0 else { return nil }
                let message = String(decoding: buffer[0..<n], as: UTF8.self)
                seen.append(message)
                if done(message) { return seen }
            }
        }

        deinit {
            close(fd)
            unlink(path)
        }
    }

    @Test func readyStatusReloadWatchdogAndStopping() throws {
        let box = try HostAgentSystem.AgentBox()
        try box.guest("g1", "[Guest]\nChannel=unix:\(box.dir)/nobody-listens.sock\nPolicy=manual\n")
        let sink = try NotifySink(path: box.dir + "/notify.sock")
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: productsDirectory + "/balloon-hostd")
        agent.arguments = ["--config", box.config]
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = sink.path
        environment["WATCHDOG_USEC"] = "200000"
        environment["WATCHDOG_PID"] = nil
        agent.environment = environment
        agent.standardOutput = FileHandle.nullDevice
        agent.standardError = FileHandle.nullDevice
        try agent.run()
        defer { if agent.isRunning { agent.terminate(); agent.waitUntilExit() } }

        // STATUS= then READY=1 once the control socket listens and the files are read.
        let start = try #require(sink.receive { $0 == "READY=1" })
        #expect(start.contains("STATUS=1 guests, 0 connected, policy manual"), "\(start)")
        #expect(FileManager.default.fileExists(atPath: box.control), "READY=1 before the control socket")
        // The loop pings the watchdog every WATCHDOG_USEC / 2.
        for _ in 0..<3 { #expect(sink.receive { $0 == "WATCHDOG=1" } != nil) }

        // A reload that removes the guest: RELOADING=1, then READY=1 and the new STATUS=.
        try FileManager.default.removeItem(atPath: box.guests + "/g1.conf")
        kill(agent.processIdentifier, SIGHUP)
        let reloading = try #require(sink.receive { $0.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") })
        #expect(!reloading.contains("READY=1"), "\(reloading)")
        #expect(sink.receive { $0 == "READY=1" } != nil)
        let status = try #require(sink.receive { $0.hasPrefix("STATUS=") })
        #expect(status.last == "STATUS=0 guests, 0 connected, policy manual", "\(status)")

        agent.terminate()
        #expect(sink.receive { $0 == "STOPPING=1" } != nil)
        agent.waitUntilExit()
        #expect(agent.terminationStatus == 0)
    }
}

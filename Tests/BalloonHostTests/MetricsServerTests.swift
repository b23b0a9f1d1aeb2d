// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// The metrics server in a real agent loop (in this process, on a thread),
/// with small limits: a client over the limit gets 503 at once, idle clients
/// are cut with 408 at the deadline, and the endpoint serves again after;
/// a unix socket listener serves the same and is removed at the stop.
@Suite(.serialized) struct MetricsServerLimits {
    final class Running: @unchecked Sendable {
        let agent: HostAgent
        let thread: Thread

        init(_ agent: HostAgent) {
            self.agent = agent
            let box = UncheckedBox(agent)
            let state = StateBox()
            thread = Thread { try? box.value.run(); state.set() }
            self.state = state
            thread.start()
        }
        let state: StateBox
        func stop() -> Bool {
            agent.stop()
            return waitUntil { state.isSet }
        }
    }

    final class UncheckedBox<T>: @unchecked Sendable { let value: T; init(_ v: T) { value = v } }
    final class StateBox: @unchecked Sendable {
        private let lock = NSLock()
        private var flag = false
        func set() { lock.lock(); flag = true; lock.unlock() }
        var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flag }
    }

    func agent(_ dir: TempDir, listen: String) throws -> HostAgent {
        mkdir(dir.path + "/g", 0o755)
        let config = "[Host]\nControl=\(dir.path)/control\nGuestDirectory=\(dir.path)/g\n[Discovery]\nLibvirt=no\n[Metrics]\nListen=\(listen)\n"
        try config.write(toFile: dir.path + "/h.conf", atomically: false, encoding: .utf8)
        return try HostAgent(configPath: dir.path + "/h.conf", required: true) { _ in }
    }

    static func connectTCP(_ port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        precondition(r == 0, "connect: \(errno)")
        return fd
    }

    /// Sends `request` (if any) and reads to EOF; the receive timeout only bounds a failure.
    static func exchange(_ fd: Int32, _ request: String?) -> String {
        defer { close(fd) }
        if let request { _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func clientLimitAndDeadline() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let agent = try agent(dir, listen: "127.0.0.1:0")
        // The same endpoint with small limits.
        agent.metrics?.close()
        agent.metrics = try MetricsServer(
            listen: agent.setup.config.metricsListen, limits: .init(timeout: .seconds(1), maxClients: 2), loop: agent.loop
        ) { Array("x 1\n".utf8) }
        let port = try StreamSocket.localPort(agent.metrics!.listener)
        let running = Running(agent)

        let idle = [Self.connectTCP(port), Self.connectTCP(port)]
        #expect(waitUntil { running.agent.metrics?.connections.count == 2 })
        let refused = Self.exchange(Self.connectTCP(port), nil)
        #expect(refused.hasPrefix("HTTP/1.1 503 "), "\(refused)")
        // Idle clients: 408 at their deadline, then closed.
        for fd in idle { #expect(Self.exchange(fd, nil).hasPrefix("HTTP/1.1 408 ")) }
        let ok = Self.exchange(Self.connectTCP(port), "GET /metrics HTTP/1.0\r\n\r\n")
        #expect(ok.hasPrefix("HTTP/1.1 200 OK\r\n") && ok.hasSuffix("\r\n\r\nx 1\n"), "\(ok)")
        #expect(running.stop())
    }

    @Test func unixSocketListener() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.path + "/metrics.sock"
        let agent = try agent(dir, listen: path)
        #expect(agent.metrics?.address == path)
        let running = Running(agent)
        let fd = try StreamSocket.connectUnix(path: path)
        let page = Self.exchange(dup(fd.raw), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        fd.close()
        #expect(page.hasPrefix("HTTP/1.1 200 OK\r\n") && page.contains("\nballoon_hostd_guests{state=\"up\"} 0\n"), "\(page)")
        #expect(running.stop())
        #expect(access(path, F_OK) != 0)
    }
}

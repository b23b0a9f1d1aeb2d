// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// balloon-hostd's /metrics with a real balloond guest on a unix socket:
/// `promtool check metrics` is clean on a live scrape; the strict server
/// refuses bad requests (POST, an oversized head, a head dribbled past the
/// time limit); a real Prometheus server scrapes the agent and its query API
/// returns a guest's balloon after it moved. The shipped alert rules pass
/// `promtool check rules`. Small balloons (≤ 32 MiB); run with --no-parallel.
@Suite(.serialized) struct MetricsSystem {
    typealias AgentBox = HostAgentSystem.AgentBox
    typealias AgentProcess = HostAgentSystem.AgentProcess

    /// One TCP connection to 127.0.0.1:`port`: sends `request`, reads to EOF.
    /// The receive timeout only bounds a failure.
    static func exchange(port: UInt16, _ request: [UInt8], timeout: Int = 20) throws -> String {
        let fd = try connect(port: port)
        defer { close(fd) }
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            // The server may answer and stop reading before all is sent (431).
            if n <= 0 { break }
            sent += n
        }
        return try readToEnd(fd, timeout: timeout)
    }

    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errno)") }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { close(fd); throw HarnessError("connect to port \(port): errno \(errno)") }
        return fd
    }

    static func readToEnd(_ fd: Int32, timeout: Int) throws -> String {
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == ECONNRESET { break }
                throw HarnessError("recv: errno \(errno) after \(data.count) bytes (timed out?)")
            }
            data += buffer[..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func get(port: UInt16, _ target: String) throws -> (status: Int, body: String) {
        let reply = try exchange(port: port, Array("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8))
        return split(reply)
    }

    static func split(_ reply: String) -> (status: Int, body: String) {
        let status = Int(reply.split(separator: " ").dropFirst().first ?? "") ?? 0
        let body = reply.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return (status, body)
    }

    /// Runs a tool with `input` on stdin; its exit status and output.
    static func run(_ tool: String, _ arguments: [String], input: String = "") throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        let inPipe = Pipe(), outPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        p.standardError = outPipe
        try p.run()
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try inPipe.fileHandleForWriting.close()
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }

    /// An agent with one guest `g` (Policy=manual) and metrics on a free
    /// port. The guest has a sparse 64 MiB RAM file on /dev/shm, so the
    /// frame series are there too: this machine's frames are host-physical,
    /// mostly past 64 MiB, and refused as outside RAM.
    final class Setup {
        let box: AgentBox
        let sandbox: Sandbox
        let daemon: DaemonProcess
        let agent: AgentProcess
        let port: UInt16
        let backend = "/dev/shm/balloond-metrics-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

        init() throws {
            box = try AgentBox(extra: "[Metrics]\nListen=127.0.0.1:0\n")
            sandbox = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
            daemon = try DaemonProcess(arguments: ["--config", sandbox.configPath], waitForSocket: sandbox.socket)
            let fd = open(backend, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0, ftruncate(fd, off_t(64 * MiB)) == 0 else { throw HarnessError("cannot make \(backend): errno \(errno)") }
            close(fd)
            try box.guest("g", "[Guest]\nChannel=unix:\(sandbox.socket)\nPolicy=manual\nMemoryBackend=\(backend)\n")
            agent = try AgentProcess(["--config", box.config])
            let agent = agent
            let line = waitFor { agent.log.split(separator: "\n").first { $0.contains("metrics: serving /metrics on 127.0.0.1:") } }
            guard let line, let port = UInt16(line.split(separator: ":").last ?? "") else {
                throw HarnessError("no metrics port in the log: \(agent.log)")
            }
            self.port = port
        }

        deinit { unlink(backend) }

        /// Moves g's balloon through the agent's control socket.
        func setTarget(_ target: UInt64) throws {
            let client = try RawClient(socket: box.control)
            try client.sync()
            #expect(waitUntil { (try? client.value("guest-status", ["name": "g"]))?["session"]?["guest-connected"]?.bool == true }, "\(agent.log)")
            try client.value("select-guest", ["name": "g"])
            var events: [Event] = []
            try client.call("set-target", ["target": .uint(target)], events: &events)
            _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        }

        /// Ends the agent by pid (SIGTERM) and checks it stopped cleanly.
        func stop() {
            kill(agent.pid, SIGTERM)
            #expect(agent.waitForExit() == 0, "\(agent.log)")
        }
    }

    @Test func liveScrapeIsCleanAndBadRequestsAreRefused() throws {
        let s = try Setup()
        // Opened first and left half-sent: the time limit ends it while the rest runs.
        let dribble = try Self.connect(port: s.port)
        defer { close(dribble) }
        _ = "GET /metrics HTTP/1.1\r\n".withCString { send(dribble, $0, 23, Int32(MSG_NOSIGNAL)) }

        try s.setTarget(16 * MiB)
        // Once a STATS sample after the move is in, the guest's series are there.
        var page = ""
        #expect(waitUntil {
            page = (try? Self.get(port: s.port, "/metrics").body) ?? ""
            return page.contains("balloond_usable_bytes{guest=\"g\"}") && page.contains("balloond_balloon_bytes{guest=\"g\"} \(16 * MiB)\n")
        }, "\(page)\n\(s.agent.log)")
        for series in ["balloond_up{guest=\"g\"} 1", "balloon_hostd_guests{state=\"up\"} 1", "balloon_hostd_build_info{version=",
                       "# TYPE balloond_major_fault_total counter", "balloond_available_bytes{guest=\"g\"}"] {
            #expect(page.contains(series), "\(series)")
        }
        // With a backend: the frame series, refusals by reason.
        #expect(page.contains("balloond_host_freed_bytes{guest=\"g\"}") && page.contains("balloond_refused_ranges_total{guest=\"g\",reason=\"outside-ram\"}"))
        let check = try Self.run("/usr/bin/promtool", ["check", "metrics"], input: page)
        #expect(check.status == 0 && check.output.isEmpty, "promtool: \(check.output)")

        // HEAD: the head alone.
        let head = try Self.exchange(port: s.port, Array("HEAD /metrics HTTP/1.0\r\n\r\n".utf8))
        #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.hasSuffix("\r\n\r\n"))
        // Another method, another path, a bad head, an oversized head.
        let post = try Self.exchange(port: s.port, Array("POST /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello".utf8))
        #expect(post.hasPrefix("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"), "\(post)")
        #expect(try Self.get(port: s.port, "/").status == 404)
        #expect(Self.split(try Self.exchange(port: s.port, Array("GET /metrics HTTP/1.1\n\n".utf8))).status == 400)
        let big = "GET /metrics HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n"
        #expect(Self.split(try Self.exchange(port: s.port, Array(big.utf8))).status == 431)

        // The dribbled head: 408 at the time limit (10 s from its accept), then EOF.
        let late = try Self.readToEnd(dribble, timeout: 30)
        #expect(late.hasPrefix("HTTP/1.1 408 "), "\(late)")
        // Still serving after all that.
        #expect(try Self.get(port: s.port, "/metrics").status == 200)
        s.stop()
    }

    /// A real Prometheus server (loopback, its own directory, 1 s scrapes)
    /// reads the guest's balloon back after it moved.
    @Test func prometheusScrapesTheAgent() throws {
        let s = try Setup()
        let dir = s.box.dir + "/prometheus"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: balloon-hostd
                static_configs:
                  - targets: ['127.0.0.1:\(s.port)']
            """.write(toFile: dir + "/prometheus.yml", atomically: false, encoding: .utf8)
        let webPort = try Self.freePort()
        let prometheus = Process()
        prometheus.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        prometheus.arguments = [
            "--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data",
            "--web.listen-address=127.0.0.1:\(webPort)", "--log.level=warn",
        ]
        let log = dir + "/prometheus.log"
        let logHandle = try emptyLogFile(log)
        prometheus.standardOutput = logHandle
        prometheus.standardError = logHandle
        try prometheus.run()
        defer {
            // Stopped by its pid, and waited for.
            if prometheus.isRunning { kill(prometheus.processIdentifier, SIGTERM) }
            prometheus.waitUntilExit()
            try? logHandle.close()
        }
        func prometheusLog() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        // The balloon moves to 32 MiB through the agent's control socket.
        try s.setTarget(32 * MiB)

        // Prometheus's query API returns the new value for guest g.
        let query = "balloond_balloon_bytes%7Bguest%3D%22g%22%7D"
        var answer = ""
        let seen = waitUntil(timeout: .seconds(30), interval: .milliseconds(250)) {
            guard let reply = try? Self.get(port: webPort, "/api/v1/query?query=\(query)"), reply.status == 200 else { return false }
            answer = reply.body
            guard let json = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any],
                let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]],
                let first = result.first, let metric = first["metric"] as? [String: String], let value = first["value"] as? [Any]
            else { return false }
            return metric["guest"] == "g" && metric["job"] == "balloon-hostd" && value.last as? String == String(32 * MiB)
        }
        #expect(seen, "\(answer)\n\(prometheusLog())\n\(s.agent.log)")

        kill(prometheus.processIdentifier, SIGTERM)
        prometheus.waitUntilExit()
        #expect(prometheus.terminationStatus == 0, "\(prometheusLog())")
        s.stop()
    }

    /// A port nobody listens on now (bound, read, closed).
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw HarnessError("cannot bind a free port: errno \(errno)") }
        return UInt16(bigEndian: sa.sin_port)
    }

    @Test func shippedAlertRulesAndDashboard() throws {
        let rules = RepoFiles.url("packaging/monitoring/balloon-hostd-alerts.yml").path
        let check = try Self.run("/usr/bin/promtool", ["check", "rules", rules])
        #expect(check.status == 0 && check.output.contains("SUCCESS: 4 rules found"), "\(check.output)")
        for alert in ["BalloonGuestMemoryPressure", "BalloonGuestUnreachable", "BalloonPunchFailures"] {
            #expect(try RepoFiles.text("packaging/monitoring/balloon-hostd-alerts.yml").contains("alert: \(alert)"))
        }
        let dashboard = try JSONSerialization.jsonObject(with: Data(RepoFiles.bytes("packaging/monitoring/balloon-hostd-dashboard.json"))) as? [String: Any]
        #expect((dashboard?["panels"] as? [Any])?.isEmpty == false)
    }
}

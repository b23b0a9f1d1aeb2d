// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// balloon-hostd flooded: 1,000 control clients at once (beyond the 64 it
/// serves: refused and counted, the log not flooded), a client that sends
/// requests and never reads its answers (dropped past its 1 MiB outbox,
/// counted), senders dribbling a byte at a time on the control, QMP and
/// metrics sockets (QMP's 16 slots full: refused and counted), more silent
/// and dribbling control clients than the 64 slots (dropped after 10 s, so
/// `list-guests` is answered again), and a hostile guest (tests/faults/flood_guest.py) that
/// answers only sync and then floods garbage, over-long lines and events.
/// Throughout, `list-guests` answers and the agent's memory stays bounded.
/// Latency under flood is bench/flood.py's (bench/results-flood.md).
@Suite(.serialized) struct FloodSystem {
    typealias AgentBox = HostAgentSystem.AgentBox

    static func connectUnix(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            for (i, b) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        if r != 0 { close(fd); return -1 }
        return fd
    }

    static func sendAll(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    static func raiseFileLimit() {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = max(limit.rlim_cur, min(limit.rlim_max, 4096))
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    func listed(_ client: RawClient) throws -> [String] {
        try GuestListReply(json: try client.value("list-guests")).guests.map(\.name)
    }

    @Test func clientFloodsOnControlQMPAndMetrics() throws {
        Self.raiseFileLimit()
        let box = try AgentBox(extra: "[Metrics]\nListen=127.0.0.1:0\n")
        let guest = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket)
        let qmp = box.dir + "/g.qmp"
        try box.guest("g", "[Guest]\nChannel=unix:\(guest.socket)\nPolicy=manual\nQMP=\(qmp)\n")
        let agent = try ToolProcess("balloon-hostd", ["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let port = waitFor { agent.log.split(separator: "\n").first { $0.contains("metrics: serving /metrics on 127.0.0.1:") } }
            .flatMap { UInt16($0.split(separator: ":").last ?? "") }
        let client = try RawClient(socket: box.control)
        try client.sync()
        #expect(waitUntil { (try? client.guestStatus("g"))?.session.guestConnected == true }, "\(agent.log)")
        let rssBefore = residentBytes(agent.pid)

        // 1,000 at once: 63 slots are left beside ours, the rest refused.
        let flood = (0..<1000).map { _ in Self.connectUnix(box.control) }
        defer { flood.filter { $0 >= 0 }.forEach { close($0) } }
        #expect(flood.allSatisfy { $0 >= 0 })
        #expect(waitUntil { (try? client.guestStatus("g"))?.session.clientsRefused == 937 }, "\(agent.log)")
        #expect(try listed(client) == ["g"])
        let refusalLines = agent.log.split(separator: "\n").filter { $0.contains("control client refused: 64 already connected") }
        #expect(!refusalLines.isEmpty && refusalLines.count < 10, "a line per refusal floods the journal")
        flood.filter { $0 >= 0 }.forEach { close($0) }
        // Once the agent has seen them go, a new client is served again.
        #expect(waitUntil { (try? { () throws -> Bool in try RawClient(socket: box.control).sync(); return true }()) ?? false }, "\(agent.log)")

        // A client that asks and never reads: its answers pile up to the outbox limit, then it is dropped.
        let deaf = try RawClient(socket: box.control)
        let ask = String(repeating: #"{"execute":"list-guests","id":1}"# + "\n", count: 256)
        var batches = 0
        while batches < 200, Self.sendAll(deaf.fd.raw, ask) { batches += 1 }
        #expect(waitUntil { (try? client.guestStatus("g"))?.session.clientsDropped == 1 }, "\(agent.log)")
        #expect(agent.log.contains("dropped: not reading (more than 1048576 bytes unsent)"))
        #expect(try listed(client) == ["g"])

        // Dribblers: a byte at a time on each socket, list-guests answering between the bytes.
        let control = (0..<8).map { _ in Self.connectUnix(box.control) }
        let qmps = (0..<8).map { _ in Self.connectUnix(qmp) }
        let metrics = try (0..<8).map { _ in try MetricsSystem.connect(port: try #require(port)) }
        defer { (control + qmps + metrics).filter { $0 >= 0 }.forEach { close($0) } }
        let request = Array(#"{"execute":"list-guests","id":7}"#.utf8) + [0x0A]
        let head = Array("GET /metrics HTTP/1.1\r\nHost: x\r\n".utf8)
        for i in 0..<max(head.count, request.count) {
            for fd in control + qmps where i < request.count { _ = Self.sendAll(fd, String(decoding: [request[i]], as: UTF8.self)) }
            for fd in metrics where i < head.count { _ = Self.sendAll(fd, String(decoding: [head[i]], as: UTF8.self)) }
            #expect(try listed(client) == ["g"])
        }
        // The QMP socket takes 16: 8 more beside the dribblers, then refusals, counted.
        let moreQMP = (0..<16).map { _ in Self.connectUnix(qmp) }
        defer { moreQMP.filter { $0 >= 0 }.forEach { close($0) } }
        #expect(waitUntil { (try? client.guestStatus("g"))?.session.qmpClientsRefused == 8 }, "\(agent.log)")
        #expect(agent.log.split(separator: "\n").filter { $0.contains("QMP client refused: 16 already connected") }.count < 10)
        // /metrics counts every refusal by socket, and the dropped client.
        let scrape = try MetricsSystem.get(port: try #require(port), "/metrics").body
        let refusedLine = scrape.split(separator: "\n").first { $0.hasPrefix(#"balloon_hostd_clients_refused_total{socket="control"} "#) }
        #expect(refusedLine.flatMap { UInt64($0.split(separator: " ").last ?? "") } ?? 0 >= 937, "\(scrape)")
        #expect(scrape.contains(#"balloon_hostd_clients_refused_total{socket="qmp"} 8"#))
        #expect(scrape.contains("balloon_hostd_control_clients_dropped_total 1"))
        // The dribbled control requests complete and are answered.
        for fd in control {
            var answer = [UInt8](repeating: 0, count: 4096)
            var tv = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let n = recv(fd, &answer, answer.count, 0)
            #expect(n > 0 && String(decoding: answer[..<max(0, n)], as: UTF8.self).contains(#""id":7"#))
        }
        #expect(residentBytes(agent.pid) < rssBefore + residentGrowthBound, "RSS \(rssBefore) → \(residentBytes(agent.pid))")
        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0, "\(agent.log)")
        _ = daemon
    }

    /// More slot-holders than the 64 slots, half silent, half dribbling a
    /// request that never ends: without the request timeout an operator's
    /// `list-guests` would be refused for as long as they stay. They are
    /// dropped 10 s after they connected (counted in `clients-dropped` and
    /// /metrics, logged in a few lines), and the operator is answered.
    @Test func moreDribblersThanSlotsDoNotLockOutList() throws {
        Self.raiseFileLimit()
        // The operator's tries while the flood holds the slots are closed at
        // once: its write is then EPIPE, not a SIGPIPE ending the test process.
        _ = signal(SIGPIPE, SIG_IGN)
        let box = try AgentBox(extra: "[Metrics]\nListen=127.0.0.1:0\n")
        let guest = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket)
        try box.guest("g", "[Guest]\nChannel=unix:\(guest.socket)\nPolicy=manual\n")
        let agent = try ToolProcess("balloon-hostd", ["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let port = waitFor { agent.log.split(separator: "\n").first { $0.contains("metrics: serving /metrics on 127.0.0.1:") } }
            .flatMap { UInt16($0.split(separator: ":").last ?? "") }
        // The flood takes every slot; its first 64 are accepted and the rest refused.
        let flood = (0..<80).map { _ in Self.connectUnix(box.control) }
        defer { flood.filter { $0 >= 0 }.forEach { close($0) } }
        #expect(flood.allSatisfy { $0 >= 0 })
        let dribblers = flood.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        let line = Array(#"{"execute":"list-guests","id":9,"pad":""#.utf8) + [UInt8](repeating: 0x61, count: 4096)
        let stop = Flag(), done = Flag()
        let dribbling = Thread {
            defer { done.set() }
            // A byte a second to each, never the newline, until the test ends.
            var i = 0
            while !stop.isSet, i < line.count {
                for fd in dribblers { _ = Self.sendAll(fd, String(decoding: [line[i]], as: UTF8.self)) }
                i += 1
                _ = waitUntil(timeout: .seconds(1)) { stop.isSet }
            }
        }
        dribbling.start()
        // Stopped before the descriptors close (their numbers are reused).
        defer { stop.set(); waitUntil { done.isSet } }
        // An operator's list: refused while the flood holds the slots, answered once they are dropped.
        let answered = waitFor(timeout: .seconds(60), interval: .milliseconds(200)) { () -> [String]? in
            guard let operatorClient = try? RawClient(socket: box.control) else { return nil }
            return try? listed(operatorClient)
        }
        #expect(answered == ["g"], "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        let session = try client.guestStatus("g").session
        #expect(session.clientsDropped >= 64 && session.clientsRefused >= 16, "\(session.json)")
        let drops = agent.log.split(separator: "\n").filter { $0.contains("dropped") && $0.contains("no complete request within 10 s") }
        #expect(!drops.isEmpty && drops.count < 20, "\(drops)")
        let scrape = try MetricsSystem.get(port: try #require(port), "/metrics").body
        let dropped = scrape.split(separator: "\n").first { $0.hasPrefix("balloon_hostd_control_clients_dropped_total ") }
        #expect(dropped.flatMap { UInt64($0.split(separator: " ").last ?? "") } ?? 0 >= 64, "\(scrape)")
        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0, "\(agent.log)")
        _ = daemon
    }

    @Test func aGuestThatFloodsAndNeverAnswers() throws {
        let box = try AgentBox()
        let ram = try SparseRamFile()
        let socketPath = box.dir + "/hostile.sock"
        let hostile = Process()
        hostile.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        hostile.arguments = ["python3", RepoFiles.url("tests/faults/flood_guest.py").path, socketPath]
        hostile.standardOutput = FileHandle.nullDevice
        try hostile.run()
        defer { if hostile.isRunning { kill(hostile.processIdentifier, SIGKILL); hostile.waitUntilExit() } }
        #expect(waitUntil { FileManager.default.fileExists(atPath: socketPath) })
        let guest = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket)
        try box.guest("hostile", "[Guest]\nChannel=unix:\(socketPath)\nPolicy=manual\nMemoryBackend=\(ram.path)\n")
        try box.guest("quiet", "[Guest]\nChannel=unix:\(guest.socket)\nPolicy=manual\n")
        let agent = try ToolProcess("balloon-hostd", ["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        #expect(waitUntil { (try? client.guestStatus("quiet"))?.session.guestConnected == true }, "\(agent.log)")
        let rssBefore = residentBytes(agent.pid)
        // The flood is on once the agent has counted some of it.
        #expect(waitUntil { (try? client.guestStatus("hostile"))?.session.malformedLines ?? 0 > 1000 }, "\(agent.log)")
        for _ in 0..<200 { #expect(try listed(client) == ["hostile", "quiet"]) }
        // The other guest is served as usual.
        try client.value("select-guest", ["name": "quiet"])
        var events: [Event] = []
        try client.call("set-target", ["target": .uint(16 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(balloonLocked(daemon.pid) == 16 * MiB)
        // The hostile guest never answers a request: the agent gives up on the session and says why.
        #expect(waitUntil(timeout: .seconds(30)) { (try? client.guestStatus("hostile"))?.session.lastError != nil }, "\(agent.log)")
        let status = try client.guestStatus("hostile").session
        #expect(status.frameReporting == false && status.bytesFreed == 0, "\(status.json)")
        #expect(residentBytes(agent.pid) < rssBefore + residentGrowthBound, "RSS \(rssBefore) → \(residentBytes(agent.pid))")
        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0, "\(agent.log)")
    }
}

/// A flag one thread sets and another polls.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

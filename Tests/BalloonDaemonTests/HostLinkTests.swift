// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonConfig
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Logging
import Testing
@testable import BalloonDaemon

/// Epoll, with failures on cue for what a test is about.
final class FaultyRegistry: EventRegistry {
    let epoll: Epoll
    /// The next this many `add`s fail (ENOSPC: max_user_watches).
    var failAdds = 0
    var failModifies = false

    init() throws { epoll = try Epoll() }

    func add(_ fd: Descriptor, events: EpollEvents, token: UInt64) throws(SystemError) {
        if failAdds > 0 {
            failAdds -= 1
            throw SystemError("epoll_ctl(ADD)", errno: .noSpace)
        }
        try epoll.add(fd, events: events, token: token)
    }

    func modify(_ fd: Descriptor, events: EpollEvents, token: UInt64) throws(SystemError) {
        if failModifies { throw SystemError("epoll_ctl(MOD)", errno: .noMemory) }
        try epoll.modify(fd, events: events, token: token)
    }

    func remove(_ fd: Descriptor) { epoll.remove(fd) }
}

/// Log lines, kept for the test to read.
final class LogBox: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return lines.joined(separator: "\n") }
}

struct CapturingHandler: LogHandler {
    let box: LogBox
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        box.append("\(event.level): \(event.message)")
    }
}

/// A HostLink on a real epoll and real unix sockets in a scratch directory.
final class LinkRig {
    let dir: String
    let registry: FaultyRegistry
    let log = LogBox()
    let link: HostLink
    var items: [LineFramer.Item] = []

    init() throws {
        dir = NSTemporaryDirectory() + "hostlink-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        registry = try FaultyRegistry()
        let box = log
        let logger = Logger(label: "test") { _ in CapturingHandler(box: box) }
        link = try HostLink(registry: registry, logger: logger, allowedCIDs: .cids([2]))
        link.onItem = { [unowned self] in self.items.append($0) }
    }

    deinit {
        link.close()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func path(_ name: String) -> String { dir + "/" + name }

    /// One turn of a loop: whatever is ready goes to the link.
    func turn(timeout: Duration = .milliseconds(100)) throws {
        for (token, events) in try registry.epoll.wait(timeout: timeout) {
            _ = link.handle(token: token, events: events)
        }
    }

    /// Connects a client and turns the loop until the link has taken it.
    func connect(_ path: String) throws -> Descriptor {
        let client = try StreamSocket.connectUnix(path: path, nonBlocking: true)
        let taken = try waitUntil { try turn(timeout: .milliseconds(10)); return link.connection != nil }
        #expect(taken, "the link did not accept the connection")
        return client
    }
}

@Suite(.serialized) struct HostLinkTests {
    @Test func aFailedReloadKeepsThePreviousChannel() throws {
        let rig = try LinkRig()
        try rig.link.open(.unix(path: rig.path("a.sock")))
        #expect(throws: ChannelError.self) { try rig.link.switchChannel(to: .unix(path: rig.path("missing/b.sock"))) }
        #expect(rig.link.label == "unix:\(rig.path("a.sock"))")
        let client = try rig.connect(rig.path("a.sock"))
        _ = client
    }

    /// The previous channel cannot be watched again after a failed reload:
    /// said in the log and opened afresh, so hosts still reach the daemon.
    @Test func aPreviousChannelThatCannotBeWatchedAgainIsReopened() throws {
        let rig = try LinkRig()
        try rig.link.open(.unix(path: rig.path("a.sock")))
        rig.registry.failAdds = 1
        do {
            try rig.link.switchChannel(to: .unix(path: rig.path("missing/b.sock")))
            Issue.record("the reload's channel opened")
        } catch {
            guard case .open = error else { Issue.record("expected .open, got \(error)"); return }
        }
        #expect(rig.log.text.contains("cannot watch unix:\(rig.path("a.sock")) again"))
        #expect(rig.link.label == "unix:\(rig.path("a.sock"))")
        let client = try rig.connect(rig.path("a.sock"))
        _ = client
    }

    /// Neither the new channel nor the old: `.lost`, which stops the daemon.
    @Test func aChannelThatCannotBeHadBackIsLost() throws {
        let rig = try LinkRig()
        try rig.link.open(.unix(path: rig.path("a.sock")))
        rig.registry.failAdds = 2
        do {
            try rig.link.switchChannel(to: .unix(path: rig.path("missing/b.sock")))
            Issue.record("the reload's channel opened")
        } catch {
            guard case let .lost(spec, cause) = error else { Issue.record("expected .lost, got \(error)"); return }
            #expect(spec == .unix(path: rig.path("a.sock")))
            #expect(cause.errno == .noSpace)
        }
        #expect(rig.link.endpoint == nil)
    }

    @Test func pendingOutputIsFlushedAsThePeerReads() throws {
        let rig = try LinkRig()
        try rig.link.open(.unix(path: rig.path("a.sock")))
        let client = try rig.connect(rig.path("a.sock"))
        let payload = [UInt8](repeating: 0x61, count: 1 << 20) + [0x0A]
        rig.link.send(payload)
        #expect(rig.link.hasPendingOutput, "1 MiB fit in the socket buffer: the test shows nothing")
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        let done = try waitUntil {
            try rig.turn(timeout: .milliseconds(10))
            while let n = try buffer.withUnsafeMutableBytes({ (b) throws(SystemError) in try client.read(into: b) }), n > 0 { received += n }
            return received == payload.count
        }
        #expect(done)
        #expect(!rig.link.hasPendingOutput)
    }

    /// Pending output needs the descriptor watched for writability; if the
    /// registry refuses, the output would stall for good: the link says so
    /// and lets the host go instead.
    @Test func writabilityThatCannotBeWatchedDropsTheHost() throws {
        let rig = try LinkRig()
        try rig.link.open(.unix(path: rig.path("a.sock")))
        let client = try rig.connect(rig.path("a.sock"))
        rig.registry.failModifies = true
        rig.link.send([UInt8](repeating: 0x61, count: 1 << 20) + [0x0A])
        #expect(rig.link.connection == nil)
        #expect(rig.log.text.contains("write to host failed: epoll_ctl(MOD)"))
        // The host sees the end of the connection.
        var buffer = [UInt8](repeating: 0, count: 65536)
        let closed = try waitUntil {
            try buffer.withUnsafeMutableBytes { (b) throws(SystemError) in try client.read(into: b) } == 0
        }
        #expect(closed)
    }
}

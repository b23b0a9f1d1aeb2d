// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// Between serve and a local balloond, as QEMU's chardev socket is on
/// virtio-serial: serve's connection stays open when the daemon dies (the
/// relay connects again to the restarted one), and while `holding` what
/// the daemon sends is kept from serve (a stalled host: nothing is acked).
final class StallingRelay: @unchecked Sendable {
    let path: String
    private let listener: Descriptor
    private let lock = NSLock()
    private var holding = false, stopped = false, finished = false, upstreamConnected = false
    private var held: [UInt8] = [], fromGuest: [UInt8] = [], fromHost: [UInt8] = []

    init(path: String, daemon socket: String) throws {
        self.path = path
        listener = try StreamSocket.listenUnix(path: path)
        Thread { [self] in
            defer { sync { finished = true } }
            var l = pollfd(fd: listener.raw, events: Int16(POLLIN), revents: 0)
            while poll(&l, 1, 100) <= 0 { if sync({ stopped }) { return } }
            guard let host = try? StreamSocket.accept(listener) else { return }
            var upstream: Descriptor?
            var buf = [UInt8](repeating: 0, count: 65536)
            while !sync({ stopped }) {
                if upstream == nil {
                    upstream = try? StreamSocket.connectUnix(path: socket)
                    sync { upstreamConnected = upstream != nil }
                }
                let flush: [UInt8] = sync {
                    defer { if !holding { held.removeAll() } }
                    return holding ? [] : held
                }
                if !flush.isEmpty, !Self.send(host.raw, flush) { return }
                var fds = [pollfd(fd: upstream?.raw ?? -1, events: Int16(POLLIN), revents: 0), pollfd(fd: host.raw, events: Int16(POLLIN), revents: 0)]
                guard poll(&fds, 2, 50) > 0 else { continue }
                if let up = upstream, fds[0].revents != 0 {
                    let n = read(up.raw, &buf, buf.count)
                    if n <= 0 {
                        // The daemon died: serve is not told (its connection stays).
                        upstream = nil
                        sync { upstreamConnected = false }
                    } else {
                        let chunk = Array(buf[..<n])
                        let keep: Bool = sync { fromGuest += chunk; if holding { held += chunk }; return holding }
                        if !keep, !Self.send(host.raw, chunk) { return }
                    }
                }
                if fds[1].revents != 0 {
                    let n = read(host.raw, &buf, buf.count)
                    if n <= 0 { return }
                    let chunk = Array(buf[..<n])
                    sync { fromHost += chunk }
                    if let up = upstream { _ = Self.send(up.raw, chunk) }
                }
            }
        }.start()
    }

    private func sync<T>(_ body: () -> T) -> T { lock.lock(); defer { lock.unlock() }; return body() }

    private static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    func hold() { sync { holding = true } }
    func release() { sync { holding = false } }
    var connectedToDaemon: Bool { sync { upstreamConnected } }

    func messages(fromGuest guest: Bool) -> [Message] {
        let bytes = sync { guest ? fromGuest : fromHost }
        var framer = LineFramer()
        return framer.feed(bytes).compactMap { item in
            guard case let .line(line) = item else { return nil }
            return try? Message.decode(line)
        }
    }

    /// The frames' bytes in the daemon's `name` events after the first `skip`, and how many events.
    func reported(_ name: String, skip: Int = 0) -> (events: Int, bytes: UInt64) {
        let events = messages(fromGuest: true).compactMap { m -> Event? in
            guard case let .event(e) = m, e.name == name else { return nil }
            return e
        }.dropFirst(skip)
        let bytes = events.reduce(UInt64(0)) { sum, e in
            let page = e.data["page-size"]?.uint64 ?? 4096
            return sum + (e.data["ranges"]?.array ?? []).reduce(0) { $0 + ($1.array?.last?.uint64 ?? 0) * page }
        }
        return (events.count, bytes)
    }

    func stop() {
        sync { stopped = true }
        _ = waitUntil { sync { finished } }
    }

    deinit { unlink(path) }
}

/// The guest daemon killed after `FRAMES_DEFLATED` and before the ack while
/// its host is stalled with the connection open, as a virtio-serial host is
/// (issue 13; Tests/VMTests/AckKillVMTests.swift is the same in a real
/// guest). The daemon deflates memory whose reports were acknowledged,
/// inflates again (`FRAMES_INFLATED`, never acknowledged), deflates that
/// (it waits for the ack), and is SIGKILLed. Its holders give the memory
/// back (the unacknowledged one after the grace time, protocol rule 5) and
/// it is used again (a pattern written at its frames in the sparse "RAM"
/// file); a new daemon starts. The host then reads everything the dead
/// daemon sent: it must free none of it (its probe is refused by the new
/// lifetime), and nothing it punches may be memory in use but the new
/// daemon's own. A local balloond (FaultSupport.swift); balloons ≤ 32 MiB.
@Suite(.serialized) struct StalledHostSystem {
    typealias AgentBox = HostAgentSystem.AgentBox
    static let used: UInt8 = 0xC3

    @Test func daemonKilledBeforeTheDeflateAckWhileTheHostStalls() throws {
        _ = signal(SIGPIPE, SIG_IGN)
        let guest = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        // Long enough for the deflate below to be seen waiting for its ack.
        let grace = ["BALLOOND_TEST_FRAME_GRACE_MS": "8000"]
        var daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket, environment: grace)
        let ram = try SparseRamFile()
        let box = try AgentBox()
        let relay = try StallingRelay(path: box.dir + "/relay.sock", daemon: guest.socket)
        defer { relay.stop() }
        let control = box.dir + "/serve.control"
        let serve = try ToolProcess("balloonctl", ["serve", "--unix", relay.path, "--control", control, "--memory-backend", ram.path, "--timeout", "600"])
        #expect(waitUntil { FileManager.default.fileExists(atPath: control) }, "\(serve.log)")
        let client = try RawClient(socket: control)
        try client.sync()
        func status() throws -> ServeStatus { try ServeStatus(json: try client.value("serve-status")) }
        #expect(waitUntil { (try? status())?.frameReporting == true }, "\(serve.log)")
        func locked(_ bytes: UInt64) -> Bool { waitUntil(timeout: .seconds(30)) { balloonLocked(daemon.pid) == bytes } }
        func reload(max: String?) throws {
            try guest.writeConfig("[Balloon]\nChunkSize=8M\n" + (max.map { "MaxBalloon=\($0)\n" } ?? ""))
            daemon.signal(SIGHUP)
        }

        // Inflated, every report acknowledged and punched.
        var events: [Event] = []
        try client.call("set-target", ["target": .uint(32 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(waitUntil(timeout: .seconds(30)) { (try? status()).map { $0.bytesHeld == 32 * MiB } ?? false }, "\(serve.log)")
        let before = try status()

        // The host stalls.
        relay.hold()
        let inflated = relay.reported("FRAMES_INFLATED").events, deflated = relay.reported("FRAMES_DEFLATED").events
        try reload(max: "16M")
        #expect(locked(16 * MiB), "\(daemon.log)")
        try reload(max: nil)
        #expect(locked(32 * MiB), "\(daemon.log)")
        let heldBeforeKill = lockedFrames(daemon.pid)
        #expect(waitUntil { relay.reported("FRAMES_INFLATED", skip: inflated).bytes >= 16 * MiB })
        try reload(max: "16M")
        #expect(waitUntil { relay.reported("FRAMES_DEFLATED", skip: deflated).bytes >= 32 * MiB }, "\(daemon.log)")
        #expect(balloonLocked(daemon.pid) == 32 * MiB, "memory whose deflate was not acknowledged was released")

        // Killed before the ack. Its memory is used again once its holders
        // are gone (the unacknowledged one lingers for the grace time).
        let holders = children(of: daemon.pid)
        daemon.signal(SIGKILL)
        #expect(daemon.waitForExit() != nil)
        #expect(waitUntil(timeout: .seconds(60)) { holders.allSatisfy { (statusValue($0, "VmLck") ?? 0) == 0 } }, "holders \(holders) never exited")
        ram.fill(heldBeforeKill, with: Self.used)
        let fromDeadDaemon = relay.messages(fromGuest: true).count
        daemon = try DaemonProcess(arguments: ["--config", guest.configPath], waitForSocket: guest.socket)
        #expect(waitUntil { relay.connectedToDaemon })

        // The host reads what the dead daemon sent; its probe is refused by
        // the new daemon, so it abandons all of it and starts over.
        relay.release()
        #expect(waitUntil(timeout: .seconds(30)) { (try? status())?.daemonRestarts == 1 }, "\(serve.log)")
        let after = try status()
        let punched = ram.frames(heldBeforeKill, notAll: Self.used)
        // The new daemon re-inflates and may get some of the same frames back:
        // those it reported are its own to free.
        let newDaemons = Set(relay.messages(fromGuest: true).dropFirst(fromDeadDaemon).flatMap { m -> [UInt64] in
            guard case let .event(e) = m, e.name == "FRAMES_INFLATED" else { return [] }
            return ranges(e).flatMap { $0.0 ..< $0.0 + $0.1 }
        })
        let wrongly = punched.filter { !newDaemons.contains($0) }
        // The count, not the array: #expect would print every frame.
        let wronglyCount = wrongly.count
        #expect(wronglyCount == 0,
                "\(wronglyCount) pages in use were punched (first: \(wrongly.prefix(8))) after the daemon died (serve: \(after.punches - before.punches) more punches, \(after.bytesFreed - before.bytesFreed) more bytes freed)\n\(serve.log)")
        #expect(after.bytesAbandoned >= 16 * MiB, "\(serve.log)")
        kill(serve.pid, SIGTERM)
        #expect(serve.waitForExit() == 0, "\(serve.log)")
    }
}

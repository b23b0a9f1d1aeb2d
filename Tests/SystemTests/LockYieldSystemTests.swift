// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// A chunk lock gives way to the host (docs/pressure.md, "A lock gives way"):
/// while a holder locks, the daemon still reads its channel; a `set-target`
/// below what the lock would hold ends the lock, and every request that came
/// meanwhile is answered in order once the lock is over. The holders are
/// stopped (SIGSTOP), so a lock cannot finish before the test lets it.
@Suite(.serialized) struct LockGivesWayToTheHost {
    /// A daemon with one 16 MiB chunk held and its spare holder (forked while
    /// that chunk locked) stopped, with every other child.
    private struct Stalled {
        let box: Sandbox
        let daemon: DaemonProcess
        let client: RawClient
        let stopped: [Int32]
        let spare: Int32

        init(config extra: String = "") throws {
            box = try Sandbox(config: "[Balloon]\nChunkSize=16M\n" + extra)
            daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
            client = try RawClient(socket: box.socket)
            try client.sync()
            var events: [Event] = []
            try client.call("set-target", ["target": .uint(16 * MiB)], events: &events)
            _ = try client.waitForEvent("TARGET_REACHED", into: &events)
            stopped = SystemTests.children(of: daemon.pid)
            let spares = stopped.filter { (statusValue($0, "VmLck") ?? 0) == 0 }
            try #require(spares.count == 1, "children \(stopped)")
            spare = spares[0]
            for pid in stopped { kill(pid, SIGSTOP) }
        }

        func resume() { for pid in stopped { kill(pid, SIGCONT) } }

        /// Sends `set-target` and takes its reply; the daemon then steps and
        /// waits in the lock on the stopped spare: in poll(2), not the
        /// loop's epoll_wait(2).
        func growIntoTheStalledLock(to target: UInt64) throws {
            var events: [Event] = []
            try client.call("set-target", ["target": .uint(target)], events: &events)
            let inLock = waitUntil { Stalled.inPoll.contains(Self.blockedIn(daemon.pid) ?? -1) }
            try #require(inLock, "the daemon never waited in the lock: \(daemon.log)")
        }

        /// poll(2) and ppoll(2) on x86_64 (the lock's wait; the loop's is epoll_wait(2), 232).
        static let inPoll: Set<Int> = [7, 271]

        static func blockedIn(_ pid: Int32) -> Int? {
            let text = (try? String(contentsOfFile: "/proc/\(pid)/syscall", encoding: .utf8)) ?? ""
            return text.split(separator: " ").first.flatMap { Int($0) }
        }
    }

    private func request(_ id: Int64, _ command: String, _ arguments: JSON = [:]) -> [UInt8] {
        Message.request(Request(command, arguments: arguments, id: .int(id))).encoded()
    }

    /// The next `count` replies, in the order they came.
    private func replies(_ client: RawClient, _ count: Int) throws -> [Response] {
        var out: [Response] = []
        while out.count < count, let message = try client.nextMessage() {
            if case let .response(r) = message { out.append(r) }
        }
        return out
    }

    @Test func aLowerTargetEndsTheLockAndWhatCameMeanwhileIsAnsweredInOrder() throws {
        let stalled = try Stalled()
        defer { stalled.resume() }
        try stalled.growIntoTheStalledLock(to: 32 * MiB)
        // A query, then a target below the 32 MiB the lock would hold.
        try stalled.client.send(request(100, "query") + request(101, "set-target", ["target": .uint(16 * MiB)]))
        let answered = try replies(stalled.client, 2)
        #expect(answered.map(\.id) == [.int(100), .int(101)])
        #expect(try answered.first?.result.get()["actual"]?.uint64 == 16 * MiB)
        #expect(waitUntil { kill(stalled.spare, 0) != 0 }, "the holder whose lock gave way still runs")
        #expect(stalled.daemon.log.contains("the host lowered the target during a chunk lock"))
        #expect(try stalled.client.value("query")["actual"]?.uint64 == 16 * MiB)
        #expect(balloonLocked(stalled.daemon.pid) == 16 * MiB)
    }

    /// The last target read is the one that counts: a lower one the host
    /// raised again in the same read leaves the lock alone.
    @Test func aHigherTargetLeavesTheLockAndIsAnsweredAfterIt() throws {
        let stalled = try Stalled()
        defer { stalled.resume() }
        try stalled.growIntoTheStalledLock(to: 32 * MiB)
        try stalled.client.send(request(200, "query") + request(201, "set-target", ["target": .uint(16 * MiB)])
            + request(202, "set-target", ["target": .uint(48 * MiB)]))
        // Nothing is answered while the lock waits on the stopped holder.
        #expect(try stalled.client.nextMessage(timeout: 0.5) == nil)
        #expect(Stalled.inPoll.contains(Stalled.blockedIn(stalled.daemon.pid) ?? -1))
        stalled.resume()
        let answered = try replies(stalled.client, 3)
        #expect(answered.map(\.id) == [.int(200), .int(201), .int(202)])
        #expect(try answered.first?.result.get()["actual"]?.uint64 == 32 * MiB)
        var events: [Event] = []
        _ = try stalled.client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(try stalled.client.value("query")["actual"]?.uint64 == 48 * MiB)
        #expect(!stalled.daemon.log.contains("the host lowered the target during a chunk lock"))
    }

    /// `LockYieldsToHost=no`: the lock finishes first, then the balloon
    /// deflates to the lower target.
    @Test func withLockYieldsToHostOffTheLockFinishesFirst() throws {
        let stalled = try Stalled(config: "[Pressure]\nLockYieldsToHost=no\n")
        defer { stalled.resume() }
        try stalled.growIntoTheStalledLock(to: 32 * MiB)
        try stalled.client.send(request(300, "set-target", ["target": .uint(16 * MiB)]))
        #expect(try stalled.client.nextMessage(timeout: 0.5) == nil)
        #expect(kill(stalled.spare, 0) == 0)
        stalled.resume()
        let answered = try replies(stalled.client, 1)
        #expect(answered.map(\.id) == [.int(300)])
        #expect(try answered.first?.result.get()["actual"]?.uint64 == 32 * MiB)
        #expect(waitUntil { (try? stalled.client.value("query")["actual"]?.uint64) == 16 * MiB })
        #expect(!stalled.daemon.log.contains("the host lowered the target during a chunk lock"))
    }
}

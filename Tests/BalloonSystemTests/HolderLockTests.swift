// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import Glibc
import SystemPackage
import Testing

/// What every lock in these suites asks for.
private let chunk = 4 << 20

/// A holder asked to lock `chunk` while stopped (SIGSTOP): it cannot answer
/// until it is continued, so whatever else the lock waits on comes first
/// for certain.
private func stoppedHolderLocking() throws -> HolderProcess {
    let holder = try HolderProcess()
    try #require(kill(holder.pid, SIGSTOP) == 0)
    holder.startLock(length: chunk, advice: .forbid)
    return holder
}

/// A socket pair whose `trigger` end has urgent data pending: POLLPRI, as a
/// PSI trigger that fired.
private func firedTrigger() throws -> (peer: Descriptor, trigger: Descriptor) {
    let (peer, trigger) = try StreamSocket.pair()
    var byte: UInt8 = 1
    try #require(Glibc.send(peer.raw, &byte, 1, Int32(MSG_OOB)) == 1, "MSG_OOB on a unix socket: errno \(errno)")
    return (peer, trigger)
}

/// A chunk lock gives way to a PSI trigger that fires first. A socket with
/// urgent data pending is POLLPRI, as a trigger that fired is; one whose
/// peer closed is a descriptor in error, which cannot fire.
@Suite struct HolderLockInterruption {
    @Test func aTriggerThatFiresFirstEndsTheLockAndItsHolder() throws {
        let holder = try stoppedHolderLocking()
        let (peer, trigger) = try firedTrigger()
        defer { peer.close(); trigger.close() }
        var seen: [Int] = []
        do {
            try holder.finishLock(interruptedBy: [trigger], fired: &seen)
            Issue.record("a stopped holder locked its chunk")
        } catch {
            #expect(error.cause == .lockInterrupted)
            #expect(error.operation == "mlock")
            #expect(error.subject == "\(chunk) bytes (holder \(holder.pid))")
        }
        #expect(seen == [0])
        #expect(!holder.isAlive)
        #expect(holder.length == 0)
    }

    @Test func triggersThatDoNotFireLeaveTheLockAlone() throws {
        let holder = try HolderProcess()
        defer { holder.release() }
        holder.startLock(length: chunk, advice: .forbid)
        let (quietPeer, quiet) = try StreamSocket.pair()
        let (gonePeer, broken) = try StreamSocket.pair()
        gonePeer.close()  // POLLHUP from now on: left out of the wait, not counted as fired
        defer { quietPeer.close(); quiet.close(); broken.close() }
        var seen: [Int] = []
        try holder.finishLock(interruptedBy: [broken, quiet], fired: &seen)
        #expect(seen.isEmpty)
        #expect(holder.address != 0)
        #expect(holder.isAlive)
    }

    @Test func theIndexOfTheTriggerThatFiredIsReported() throws {
        let holder = try stoppedHolderLocking()
        let (quietPeer, quiet) = try StreamSocket.pair()
        let (peer, trigger) = try firedTrigger()
        defer { quietPeer.close(); quiet.close(); peer.close(); trigger.close() }
        var seen: [Int] = []
        #expect(throws: SystemError.self) { try holder.finishLock(interruptedBy: [quiet, trigger], fired: &seen) }
        #expect(seen == [1])
    }
}

/// A chunk lock also waits on the host's channel (`LockWatch`): readable,
/// it asks the watch whether to give way, wait on, or stop watching.
@Suite struct HolderLockWatch {
    /// A socket pair whose `host` end has a byte to read.
    private func readable() throws -> (peer: Descriptor, host: Descriptor) {
        let (peer, host) = try StreamSocket.pair()
        try peer.writeAll([0x0A])
        return (peer, host)
    }

    @Test func aWatchThatGivesWayEndsTheLockAndItsHolder() throws {
        let holder = try stoppedHolderLocking()
        let (peer, host) = try readable()
        defer { peer.close(); host.close() }
        var asked = 0
        var seen: [Int] = []
        do {
            try holder.finishLock(interruptedBy: [], fired: &seen, watching: LockWatch(descriptor: host) {
                asked += 1
                return .giveWay
            })
            Issue.record("a stopped holder locked its chunk")
        } catch {
            #expect(error.cause == .lockYielded)
            #expect(error.operation == "mlock")
            #expect(error.subject == "\(chunk) bytes (holder \(holder.pid))")
        }
        #expect(asked == 1)
        #expect(seen.isEmpty)
        #expect(!holder.isAlive)
        #expect(holder.length == 0)
    }

    /// `.wait` each time the channel is readable (the watch reads what came),
    /// until the holder answers: the lock is done.
    @Test func aWatchThatWaitsLeavesTheLockToFinish() throws {
        let holder = try stoppedHolderLocking()
        defer { holder.release() }
        let (peer, host) = try readable()
        defer { peer.close(); host.close() }
        var asked = 0
        var seen: [Int] = []
        try holder.finishLock(interruptedBy: [], fired: &seen, watching: LockWatch(descriptor: host) {
            var byte: UInt8 = 0
            _ = Glibc.read(host.raw, &byte, 1)
            asked += 1
            // Only now may the holder go on: the lock cannot have finished before.
            if asked == 1 { kill(holder.pid, SIGCONT) }
            return .wait
        })
        #expect(asked == 1)
        #expect(holder.address != 0)
        #expect(holder.isAlive)
    }

    /// `.stopWatching`: asked once, though the channel stays readable (what
    /// it holds is left unread), and the lock finishes.
    @Test func aWatchThatStopsIsNotAskedAgain() throws {
        let holder = try stoppedHolderLocking()
        defer { holder.release() }
        let (peer, host) = try readable()
        defer { peer.close(); host.close() }
        var asked = 0
        var seen: [Int] = []
        try holder.finishLock(interruptedBy: [], fired: &seen, watching: LockWatch(descriptor: host) {
            asked += 1
            kill(holder.pid, SIGCONT)
            return .stopWatching
        })
        #expect(asked == 1)
        #expect(holder.address != 0)
    }

    /// A trigger that fires while the watch waits still ends the lock as a
    /// trigger does.
    @Test func triggersStillEndTheLockBesideAWatch() throws {
        let holder = try stoppedHolderLocking()
        let (quietPeer, quiet) = try StreamSocket.pair()
        let (peer, trigger) = try firedTrigger()
        defer { quietPeer.close(); quiet.close(); peer.close(); trigger.close() }
        var seen: [Int] = []
        do {
            try holder.finishLock(interruptedBy: [trigger], fired: &seen, watching: LockWatch(descriptor: quiet) { .giveWay })
            Issue.record("a stopped holder locked its chunk")
        } catch {
            #expect(error.cause == .lockInterrupted)
        }
        #expect(seen == [0])
    }
}

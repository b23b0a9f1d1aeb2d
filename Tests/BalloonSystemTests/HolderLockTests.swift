// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import Glibc
import SystemPackage
import Testing

/// A chunk lock gives way to a PSI trigger that fires first. A socket with
/// urgent data pending is POLLPRI, as a trigger that fired is; one whose
/// peer closed is a descriptor in error, which cannot fire.
@Suite struct HolderLockInterruption {
    private let chunk = 4 << 20

    private func fired() throws -> (peer: Descriptor, trigger: Descriptor) {
        let (peer, trigger) = try StreamSocket.pair()
        var byte: UInt8 = 1
        try #require(Glibc.send(peer.raw, &byte, 1, Int32(MSG_OOB)) == 1, "MSG_OOB on a unix socket: errno \(errno)")
        return (peer, trigger)
    }

    @Test func aTriggerThatFiresFirstEndsTheLockAndItsHolder() throws {
        let holder = try HolderProcess()
        // A stopped holder cannot answer: the trigger comes first for certain.
        try #require(kill(holder.pid, SIGSTOP) == 0)
        holder.startLock(length: chunk, advice: .forbid)
        let (peer, trigger) = try fired()
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
        let holder = try HolderProcess()
        try #require(kill(holder.pid, SIGSTOP) == 0)
        holder.startLock(length: chunk, advice: .forbid)
        let (quietPeer, quiet) = try StreamSocket.pair()
        let (peer, trigger) = try fired()
        defer { quietPeer.close(); quiet.close(); peer.close(); trigger.close() }
        var seen: [Int] = []
        #expect(throws: SystemError.self) { try holder.finishLock(interruptedBy: [quiet, trigger], fired: &seen) }
        #expect(seen == [1])
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonSystem
import Glibc
import Testing
@testable import BalloonDaemon

/// A clock that does not move, for parts whose time the test is not about.
final class StillClock: MonotonicClock {
    var now: Duration = .seconds(1)
}

/// A stack of chunks in holder processes, base pages, frame reporting off:
/// what the holder suites (spares, lost holders, interrupted locks) grow.
func holderChunkStack() -> ChunkStack {
    ChunkStack(hugePageAdvice: .forbid, useHolders: true,
               reporter: FrameReporter(clock: StillClock(), pageSize: UInt64(PageSize.bytes)))
}

/// The chunk stack's side of an interrupted lock: a trigger seen while a
/// holder locked is handed to the daemon (its event was taken by the wait),
/// whether the lock finished first or not.
@Suite struct ChunkLockInterruption {
    @Test func aTriggerSeenDuringALockIsHandedOn() throws {
        let chunks = holderChunkStack()
        defer { chunks.releaseAll() }
        let (peer, trigger) = try StreamSocket.pair()
        defer { peer.close(); trigger.close() }
        var byte: UInt8 = 1
        try #require(Glibc.send(peer.raw, &byte, 1, Int32(MSG_OOB)) == 1)  // POLLPRI, as a trigger that fired
        chunks.lockInterrupters = { [(trigger, .heavy)] }
        let size: UInt64 = 4 << 20
        do {
            try chunks.grow(by: size)
            #expect(chunks.heldBytes == size)  // the holder answered first
        } catch {
            #expect(error.kind == .interrupted, "\(error)")
            #expect(chunks.heldBytes == 0)
            #expect(chunks.holderPIDs.isEmpty)
        }
        #expect(chunks.takeFiredDuringLock() == [.heavy])
        #expect(chunks.takeFiredDuringLock().isEmpty)
    }
}

/// The chunk stack's side of a lock that gives way to the host: the watch
/// is asked with what the balloon would hold once the lock is done, and a
/// lock it ends holds nothing.
@Suite struct ChunkLockWatch {
    @Test func theWatchSeesWhatTheLockWouldHoldAndCanEndIt() throws {
        let chunks = holderChunkStack()
        defer { chunks.releaseAll() }
        let (peer, host) = try StreamSocket.pair()
        defer { peer.close(); host.close() }
        try peer.writeAll([0x0A])
        let size: UInt64 = 4 << 20
        var holdings: [UInt64] = []
        var giveWay = false
        chunks.lockWatch = { holding in
            holdings.append(holding)
            return LockWatch(descriptor: host) { giveWay ? .giveWay : .stopWatching }
        }
        try chunks.grow(by: size)  // asked once, stops watching, the lock finishes
        #expect(chunks.heldBytes == size)
        // The spare forked during that lock, stopped, cannot finish the next one first.
        let spare = try #require(chunks.spareHolderPIDs.last)
        try #require(kill(spare, SIGSTOP) == 0)
        giveWay = true
        do {
            try chunks.grow(by: size)
            Issue.record("a stopped holder locked its chunk")
        } catch {
            #expect(error.kind == .interrupted, "\(error)")
        }
        #expect(chunks.heldBytes == size)
        #expect(chunks.holderPIDs.count == 1)
        #expect(!chunks.spareHolderPIDs.contains(spare))
        #expect(kill(spare, 0) != 0, "the holder whose lock gave way still runs")
        #expect(holdings == [size, 2 * size])
    }
}

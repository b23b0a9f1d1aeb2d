// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonController
import BalloonSystem
import BalloonTestSupport
import CBalloonShim
import Foundation
import Glibc
import Logging
import Testing
@testable import BalloonDaemon

/// A deflate empties a holder's chunk and keeps the process as a spare for
/// the growth that follows (ChunkStack.retire), up to `spareLimit`, until
/// `trimSpareHolders()` ends what the balloon does not keep anyway.
@Suite(.serialized) struct SpareHolderTests {
    static let chunk: UInt64 = 2 << 20

    /// Bytes the process has locked (nil: it is gone).
    func locked(_ pid: Int32) -> UInt64? { ProcessStatus.value("VmLck", pid: "\(pid)") }

    func alive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    @Test func aDeflatedChunksHolderLocksNothingAndIsReusedByTheNextGrowth() throws {
        let chunks = holderChunkStack()
        defer { chunks.releaseAll() }
        try chunks.grow(by: Self.chunk)
        try chunks.grow(by: Self.chunk)
        let holders = chunks.holderPIDs
        try #require(holders.count == 2)
        for pid in holders { #expect(locked(pid) == Self.chunk) }

        chunks.shrink(by: Self.chunk)  // the newest chunk, whole
        #expect(chunks.heldBytes == Self.chunk)
        #expect(chunks.holderPIDs == [holders[0]])
        #expect(chunks.spareHolderPIDs.contains(holders[1]))
        #expect(locked(holders[1]) == 0, "an emptied holder keeps nothing locked")

        // The growth takes the newest spare: the emptied holder locks again.
        try chunks.grow(by: Self.chunk)
        #expect(chunks.holderPIDs == holders)
        #expect(locked(holders[1]) == Self.chunk)
        #expect(chunks.heldBytes == 2 * Self.chunk)
    }

    @Test func aDeflateKeepsAtMostSpareLimitHoldersAndEndsTheRest() throws {
        let chunks = holderChunkStack()
        defer { chunks.releaseAll() }
        let count = ChunkStack.spareLimit + 2
        for _ in 0..<count { try chunks.grow(by: Self.chunk) }
        let holders = chunks.holderPIDs
        let forkedAhead = chunks.spareHolderPIDs
        chunks.shrink(by: chunks.heldBytes)
        #expect(chunks.heldBytes == 0)
        #expect(chunks.spareHolderPIDs.count == ChunkStack.spareLimit)
        // The first ones emptied joined the one forked ahead; the rest were ended.
        let kept = Set(chunks.spareHolderPIDs)
        let ended = holders.filter { !kept.contains($0) }
        #expect(ended.count == count - (ChunkStack.spareLimit - forkedAhead.count))
        for pid in ended { #expect(!alive(pid), "holder \(pid) beyond the limit still runs") }
        for pid in kept { #expect(alive(pid) && locked(pid) == 0) }
    }

    @Test func trimmingKeepsOneSpareForAHeldBalloonAndNoneForAnEmptyOne() throws {
        let chunks = holderChunkStack()
        defer { chunks.releaseAll() }
        for _ in 0..<4 { try chunks.grow(by: Self.chunk) }
        chunks.shrink(by: 3 * Self.chunk)
        #expect(chunks.excessSpareHolders == chunks.spareHolderPIDs.count - 1)
        let before = chunks.spareHolderPIDs
        chunks.trimSpareHolders()
        #expect(chunks.spareHolderPIDs == [before.last!], "the newest spare stays for the next growth")
        for pid in before.dropLast() { #expect(!alive(pid)) }

        chunks.shrink(by: Self.chunk)
        #expect(chunks.heldBytes == 0)
        #expect(chunks.excessSpareHolders == 2)
        chunks.trimSpareHolders()
        #expect(chunks.spareHolderPIDs.isEmpty)
        #expect(chunks.excessSpareHolders == 0)
    }

    @Test func releaseAllAndTurningHoldersOffLeaveNoSpare() throws {
        let chunks = holderChunkStack()
        for _ in 0..<3 { try chunks.grow(by: Self.chunk) }
        chunks.shrink(by: Self.chunk)
        let spares = chunks.spareHolderPIDs
        try #require(spares.count == 2)
        chunks.useHolders = false
        #expect(chunks.spareHolderPIDs.isEmpty)
        for pid in spares { #expect(!alive(pid)) }
        // Chunks whose holders predate the switch are ended, not kept.
        chunks.shrink(by: Self.chunk)
        #expect(chunks.spareHolderPIDs.isEmpty)

        chunks.useHolders = true
        try chunks.grow(by: Self.chunk)
        let all = chunks.holderPIDs + chunks.spareHolderPIDs
        chunks.releaseAll()
        #expect(chunks.heldBytes == 0)
        #expect(chunks.spareHolderPIDs.isEmpty)
        for pid in all { #expect(!alive(pid)) }
    }

    /// The OOM killer may take a spare (it has `oom_score_adj` 1000 too): no
    /// balloon memory is lost with it, and it is simply not reused.
    @Test func aSpareTheKernelKilledIsDroppedAndCountsNoLoss() throws {
        let chunks = holderChunkStack()
        defer { chunks.releaseAll() }
        try chunks.grow(by: Self.chunk)
        try chunks.grow(by: Self.chunk)
        chunks.shrink(by: Self.chunk)
        let spare = try #require(chunks.spareHolderPIDs.last)
        #expect(kill(spare, SIGKILL) == 0)
        #expect(waitUntil { (try? String(contentsOfFile: "/proc/\(spare)/stat", encoding: .utf8))?.contains(") Z ") ?? true })
        #expect(chunks.reapDeadHolders() == 0)
        #expect(!chunks.spareHolderPIDs.contains(spare))
        #expect(chunks.heldBytes == Self.chunk)
        try chunks.grow(by: Self.chunk)
        #expect(chunks.heldBytes == 2 * Self.chunk)
    }
}

/// The daemon's timer for the spares: armed `keep` after they were last used
/// or added to while there are more than the balloon keeps, and its firing
/// trims them.
@Suite(.serialized) struct SpareHolderTimerTests {
    final class Registry: EventRegistry {
        var added: [(Descriptor, UInt64)] = []
        func add(_ fd: Descriptor, events: EpollEvents, token: UInt64) throws(SystemError) { added.append((fd, token)) }
        func modify(_ fd: Descriptor, events: EpollEvents, token: UInt64) throws(SystemError) {}
        func remove(_ fd: Descriptor) {}
    }

    /// Seconds until the timer fires (0: disarmed).
    func remaining(_ fd: Descriptor) throws -> Double {
        var spec = itimerspec()
        try #require(timerfd_gettime(fd.raw, &spec) == 0)
        return Double(spec.it_value.tv_sec) + Double(spec.it_value.tv_nsec) / 1e9
    }

    @Test func armsWhileThereAreExcessSparesAndTrimsWhenItFires() throws {
        let chunks = holderChunkStack()
        defer { chunks.releaseAll() }
        let registry = Registry()
        let timer = try SpareHolderTimer(registry: registry, chunks: chunks, logger: Logger(label: "test"), keep: .milliseconds(200))
        let (fd, token) = try #require(registry.added.first)
        #expect(token == SpareHolderTimer.token)

        try chunks.grow(by: 2 << 20)
        timer.rearm()
        #expect(try remaining(fd) == 0, "one spare forked ahead is not an excess")

        try chunks.grow(by: 2 << 20)
        chunks.shrink(by: 2 << 20)
        timer.rearm()
        let armed = try remaining(fd)
        #expect(armed > 0 && armed <= timer.keep.seconds)
        #expect(chunks.excessSpareHolders == 1)

        // Fires once `keep` has passed with the spares unused.
        #expect(waitUntil { (try? remaining(fd)) == 0 })
        timer.fired()
        #expect(chunks.excessSpareHolders == 0)
        #expect(chunks.spareHolderPIDs.count == 1)
        timer.rearm()
        #expect(try remaining(fd) == 0)
    }
}

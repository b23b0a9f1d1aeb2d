// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

/// Frame reporting's timing and ordering, on the fake clock: no test waits
/// for a grace time on the wall clock.
@Suite struct FrameReporterTiming {
    final class Rig {
        let clock = FakeClock()
        let reporter: FrameReporter
        var events: [GuestEvent] = []
        var released: [String] = []

        init(grace: Duration = .seconds(5)) {
            reporter = FrameReporter(clock: clock, pageSize: 4096, grace: grace)
            reporter.emit = { [unowned self] in self.events.append($0) }
        }

        /// A chunk reported while reporting is on.
        func reportedChunk(pfn: UInt64, pages: Int = 4) -> ReportedFrames {
            let chunk = ReportedFrames()
            reporter.reportInflated(chunk, runs: [FrameRun(pageOffset: 0, pfn: pfn, count: pages)])
            return chunk
        }

        func release(_ name: String, _ chunk: ReportedFrames, bytes: UInt64 = 4 * 4096) -> Bool {
            reporter.release(bytes, of: chunk) { [unowned self] in self.released.append(name) }
        }

        func take() -> [GuestEvent] {
            defer { events = [] }
            return events
        }
    }

    static func inflated(_ seq: UInt64, _ ranges: [FrameRange]) -> GuestEvent {
        .framesInflated(FrameReport(seq: seq, pageSize: 4096, ranges: ranges))
    }

    static func deflated(_ seq: UInt64, _ ranges: [FrameRange]) -> GuestEvent {
        .framesDeflated(FrameReport(seq: seq, pageSize: 4096, ranges: ranges))
    }

    @Test func reportsCarryConsecutiveSequenceNumbers() {
        let rig = Rig()
        rig.reporter.enable()
        _ = rig.reportedChunk(pfn: 100)
        _ = rig.reportedChunk(pfn: 200, pages: 2)
        #expect(rig.take() == [Self.inflated(1, [FrameRange(pfn: 100, count: 4)]), Self.inflated(2, [FrameRange(pfn: 200, count: 2)])])
    }

    @Test func unacknowledgedMemoryWaitsForTheAckOfItsDeflate() {
        let rig = Rig()
        rig.reporter.enable()
        let chunk = rig.reportedChunk(pfn: 100)
        _ = rig.take()
        #expect(rig.release("a", chunk) == false)
        #expect(rig.take() == [Self.deflated(2, [FrameRange(pfn: 100, count: 4)])])
        #expect(rig.released.isEmpty)
        #expect(rig.reporter.pendingBytes == 4 * 4096)
        // Acknowledging the inflate alone is not enough: the host must have
        // seen the deflate too.
        rig.reporter.acknowledge(1, chunks: [])
        #expect(rig.released.isEmpty)
        rig.reporter.acknowledge(2, chunks: [])
        #expect(rig.released == ["a"])
        #expect(rig.reporter.pendingBytes == 0)
        #expect(rig.reporter.nextDeadline == nil)
    }

    @Test func acknowledgedMemoryGoesAtOnce() {
        let rig = Rig()
        rig.reporter.enable()
        let chunk = rig.reportedChunk(pfn: 100)
        rig.reporter.acknowledge(1, chunks: [chunk])
        #expect(rig.release("a", chunk))
        #expect(rig.released == ["a"])
        #expect(rig.take().last == Self.deflated(2, [FrameRange(pfn: 100, count: 4)]))
    }

    @Test func anAckBeyondWhatWasSentCountsOnlyWhatWasSent() {
        let rig = Rig()
        rig.reporter.enable()
        let a = rig.reportedChunk(pfn: 100)
        rig.reporter.acknowledge(99, chunks: [a])  // a confused host
        let b = rig.reportedChunk(pfn: 200)
        #expect(rig.release("b", b) == false, "an ack of a seq not yet sent covered a later report")
        #expect(rig.release("a", a))
    }

    @Test func theGraceTimeEndsTheWaitOnTheFakeClock() {
        let rig = Rig(grace: .seconds(5))
        rig.reporter.enable()
        let chunk = rig.reportedChunk(pfn: 100)
        let start = rig.clock.now
        #expect(rig.release("a", chunk) == false)
        #expect(rig.reporter.nextDeadline == start + .seconds(5))
        rig.clock.advance(.milliseconds(4999))
        #expect(rig.reporter.releaseExpired() == 0)
        #expect(rig.released.isEmpty)
        rig.clock.advance(.milliseconds(1))
        #expect(rig.reporter.releaseExpired() == 4 * 4096)
        #expect(rig.released == ["a"])
        // A late ack finds nothing left to release.
        rig.reporter.acknowledge(2, chunks: [])
        #expect(rig.released == ["a"])
    }

    @Test func reportingOffHoldsUnacknowledgedMemoryForTheGraceTime() {
        let rig = Rig(grace: .seconds(5))
        rig.reporter.enable()
        let acked = rig.reportedChunk(pfn: 100), unacked = rig.reportedChunk(pfn: 200)
        rig.reporter.acknowledge(1, chunks: [acked, unacked])
        rig.clock.advance(.seconds(1))
        rig.reporter.disable([acked, unacked])
        _ = rig.take()
        #expect(unacked.holdUntil == rig.clock.now + .seconds(5))
        #expect(acked.holdUntil == nil)
        #expect(unacked.runs.isEmpty && unacked.reportedSeq == nil)
        // With reporting off nothing is reported; acknowledged memory goes,
        // the rest waits out the grace time.
        #expect(rig.release("acked", acked))
        #expect(rig.release("unacked", unacked) == false)
        #expect(rig.take().isEmpty)
        rig.clock.advance(.seconds(4))
        #expect(rig.reporter.releaseExpired() == 0)
        rig.clock.advance(.seconds(1))
        #expect(rig.reporter.releaseExpired() == 4 * 4096)
        #expect(rig.released == ["acked", "unacked"])
    }

    /// What a holder is told to outlive the daemon for (protocol rule 5).
    @Test func aHostMayFreeReportedFramesUntilTheAckOrTheHoldEnds() {
        let rig = Rig(grace: .seconds(5))
        let unreported = ReportedFrames()
        #expect(!rig.reporter.mayBeFreedByHost(unreported))
        rig.reporter.enable()
        let first = rig.reportedChunk(pfn: 100), second = rig.reportedChunk(pfn: 200)
        #expect(rig.reporter.mayBeFreedByHost(first) && rig.reporter.mayBeFreedByHost(second))
        rig.reporter.acknowledge(1, chunks: [first, second])
        #expect(!rig.reporter.mayBeFreedByHost(first))
        #expect(rig.reporter.mayBeFreedByHost(second))
        // Reporting ends before the ack: the host may still free it for the grace time.
        rig.reporter.disable([first, second])
        #expect(rig.reporter.mayBeFreedByHost(second) && !rig.reporter.mayBeFreedByHost(first))
        rig.clock.advance(.seconds(5))
        #expect(!rig.reporter.mayBeFreedByHost(second))
    }

    @Test func anAckAfterReportingEndedDoesNotShortenTheHold() {
        // The host that went away cannot be asked; a late ack (a new host
        // echoing a number) proves nothing about the frames it was sent.
        let rig = Rig()
        rig.reporter.enable()
        let chunk = rig.reportedChunk(pfn: 100)
        rig.reporter.disable([chunk])
        let hold = chunk.holdUntil
        #expect(hold != nil)
        rig.reporter.acknowledge(1, chunks: [chunk])
        #expect(chunk.holdUntil == hold)
    }

    @Test func aLostChunkIsReportedAsDeflatedOnlyWhileReporting() {
        let rig = Rig()
        rig.reporter.enable()
        let chunk = rig.reportedChunk(pfn: 100)
        _ = rig.take()
        rig.reporter.lost(chunk)
        #expect(rig.take() == [Self.deflated(2, [FrameRange(pfn: 100, count: 4)])])
        let other = rig.reportedChunk(pfn: 300)
        rig.reporter.disable([other])
        _ = rig.take()
        rig.reporter.lost(other)
        #expect(rig.take().isEmpty)
    }

    @Test func aRescanReportsOnlyFramesThatMoved() {
        let rig = Rig()
        rig.reporter.enable()
        let chunk = rig.reportedChunk(pfn: 100)
        _ = rig.take()
        #expect(rig.reporter.rescanned(chunk, fresh: chunk.runs, pages: 4) == 0)
        #expect(rig.take().isEmpty)
        // Page 2 moved from frame 102 to frame 500.
        let fresh = [FrameRun(pageOffset: 0, pfn: 100, count: 2), FrameRun(pageOffset: 2, pfn: 500, count: 1), FrameRun(pageOffset: 3, pfn: 103, count: 1)]
        #expect(rig.reporter.rescanned(chunk, fresh: fresh, pages: 4) == 1)
        #expect(rig.take() == [Self.deflated(2, [FrameRange(pfn: 102, count: 1)]), Self.inflated(3, [FrameRange(pfn: 500, count: 1)])])
        #expect(chunk.reportedSeq == 3)
        #expect(chunk.runs == fresh)
    }

    @Test func releaseAllDoesNotWait() {
        let rig = Rig()
        rig.reporter.enable()
        #expect(rig.release("a", rig.reportedChunk(pfn: 100)) == false)
        rig.reporter.releaseAll()
        #expect(rig.released == ["a"])
        #expect(rig.reporter.pendingBytes == 0)
    }
}

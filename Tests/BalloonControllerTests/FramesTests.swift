// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

@Suite struct FrameBookkeeping {
    @Test func runsCoalesceConsecutivePagesAndFrames() {
        let runs = Frames.runs(pfns: [100, 101, 102, nil, 200, 201, 50])
        #expect(runs == [
            FrameRun(pageOffset: 0, pfn: 100, count: 3),
            FrameRun(pageOffset: 4, pfn: 200, count: 2),
            FrameRun(pageOffset: 6, pfn: 50, count: 1),
        ])
    }

    @Test func rangesAreSortedAndMergedAcrossRuns() {
        // Two huge pages mapped in reverse physical order still form one range.
        let runs = [FrameRun(pageOffset: 0, pfn: 1024, count: 512), FrameRun(pageOffset: 512, pfn: 512, count: 512)]
        #expect(Frames.ranges(runs) == [FrameRange(pfn: 512, count: 1024)])
        #expect(Frames.ranges([FrameRun(pageOffset: 0, pfn: 9, count: 1), FrameRun(pageOffset: 1, pfn: 7, count: 1)])
            == [FrameRange(pfn: 7, count: 1), FrameRange(pfn: 9, count: 1)])
        #expect(Frames.ranges([]).isEmpty)
    }

    @Test func splitCutsARunAtThePage() {
        let runs = [FrameRun(pageOffset: 0, pfn: 100, count: 10), FrameRun(pageOffset: 10, pfn: 300, count: 6)]
        let (head, tail) = Frames.split(runs, atPage: 4)
        #expect(head == [FrameRun(pageOffset: 0, pfn: 100, count: 4)])
        #expect(tail == [FrameRun(pageOffset: 4, pfn: 104, count: 6), FrameRun(pageOffset: 10, pfn: 300, count: 6)])
        #expect(Frames.split(runs, atPage: 10).tail == [FrameRun(pageOffset: 10, pfn: 300, count: 6)])
        #expect(Frames.split(runs, atPage: 0).head.isEmpty)
        #expect(Frames.split(runs, atPage: 16).tail.isEmpty)
    }

    @Test func movedFramesAreFoundPageByPage() {
        let old = Frames.runs(pfns: [10, 11, 12, 13])
        let new = Frames.runs(pfns: [10, 99, 12, 100])
        let (left, arrived) = Frames.moved(from: old, to: new, pages: 4)
        #expect(Frames.ranges(left) == [FrameRange(pfn: 11, count: 1), FrameRange(pfn: 13, count: 1)])
        #expect(Frames.ranges(arrived) == [FrameRange(pfn: 99, count: 2)])
        #expect(Frames.moved(from: old, to: old, pages: 4).left.isEmpty)
        #expect(Frames.frameCount(old) == 4)
    }
}

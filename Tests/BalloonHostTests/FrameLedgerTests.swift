// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonTestSupport
import Testing

private let page: UInt64 = 4096
private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30
private let second: Duration = .seconds(1)

private func report(_ seq: UInt64, _ ranges: [[UInt64]], pageSize: UInt64 = page) -> FrameReport {
    FrameReport(seq: seq, pageSize: pageSize, ranges: ranges.map { FrameRange(pfn: $0[0], count: $0[1]) })
}

private func punches(_ d: FrameDecision) -> [[UInt64]] { d.punches.map { [$0.offset, $0.length] } }

@Suite struct FrameLedgerTests {
    func ledger(ram: UInt64 = 64 * MiB, rate: UInt64 = 1 << 40) throws -> FrameLedger {
        FrameLedger(map: try RamMap.linear(size: ram), punchRate: rate, now: .zero)
    }

    @Test func acceptedRangesArePunchedCoalescedAndHeld() throws {
        var l = try ledger()
        let d = l.inflate(report(1, [[12, 3], [10, 2], [20, 1]]), now: .zero)
        #expect(d.seq == 1)
        #expect(d.accepted == 3)
        #expect(d.refused == RefusalCounters())
        // [10,12) and [12,15) touch: one fallocate; sorted by offset.
        #expect(punches(d) == [[10 * page, 5 * page], [20 * page, page]])
        #expect(l.heldFrames == 6)
        #expect(l.held.count == 2)
    }

    @Test func outsideRamIsRefused() throws {
        var l = try ledger(ram: 64 * MiB)
        let frames = 64 * MiB / page
        let d = l.inflate(report(1, [[frames, 1], [frames - 1, 2], [UInt64.max / 2, 4], [frames - 1, 1]]), now: .zero)
        #expect(d.refused.outsideRam == 3)
        #expect(d.accepted == 1)
        #expect(punches(d) == [[64 * MiB - page, page]])
        #expect(l.refused.outsideRam == 3)
    }

    @Test func theHoleOfAPcMachineIsOutsideRam() throws {
        var l = FrameLedger(map: try RamMap.pc(ramSize: 4 * GiB), punchRate: 1 << 40, now: .zero)
        let hole = 3 * GiB / page
        let high = 4 * GiB / page
        let d = l.inflate(report(7, [[hole, 1], [hole - 1, 2], [high, 256]]), now: .zero)
        #expect(d.refused.outsideRam == 2)
        #expect(punches(d) == [[3 * GiB, MiB]])  // GPA 4 GiB is file offset 3 GiB
    }

    @Test func overlapWithHeldAndRepeatedRanges() throws {
        var l = try ledger()
        _ = l.inflate(report(1, [[100, 10]]), now: .zero)
        let again = l.inflate(report(2, [[100, 10]]), now: .zero)
        #expect(again.refused.overlap == 1)
        #expect(again.punches.isEmpty)
        let partial = l.inflate(report(3, [[109, 5], [95, 6], [115, 5]]), now: .zero)
        #expect(partial.refused.overlap == 2)
        #expect(punches(partial) == [[115 * page, 5 * page]])
        #expect(l.heldFrames == 15)
        #expect(l.refused.overlap == 3)
    }

    @Test func overlapWithinOneEvent() throws {
        var l = try ledger()
        let d = l.inflate(report(1, [[10, 5], [12, 2], [14, 4], [30, 1], [30, 1]]), now: .zero)
        #expect(d.refused.overlap == 3)
        #expect(punches(d) == [[10 * page, 5 * page], [30 * page, page]])
    }

    @Test func rateLimitWithAFakeClock() throws {
        // 1 MiB/s, one second of burst.
        var l = try ledger(rate: MiB)
        let pagesPerMiB = MiB / page
        let first = l.inflate(report(1, [[0, pagesPerMiB]]), now: .zero)
        #expect(first.accepted == 1)
        let second_ = l.inflate(report(2, [[1000, 1]]), now: second / 100)  // 10 ms later: ~10 KiB
        #expect(second_.accepted == 1)  // 4 KiB fit
        let third = l.inflate(report(3, [[2000, 16]]), now: second / 100)  // 64 KiB do not
        #expect(third.refused.rateLimit == 1)
        #expect(third.punches.isEmpty)
        // Refused for rate but still the guest's: a repeat overlaps, a deflate releases quietly.
        let r1 = l.inflate(report(4, [[2000, 16]]), now: second / 100)
        #expect(r1.refused.overlap == 1)
        let r2 = l.deflate(report(5, [[2000, 16]]))
        #expect(r2.refused == RefusalCounters())
        // Half a second later, half a MiB is back.
        let later = l.inflate(report(6, [[3000, pagesPerMiB / 2 - 2]]), now: second / 2 + second / 100)
        #expect(later.accepted == 1)
        #expect(l.refused.rateLimit == 1)
    }

    @Test func oversizedRangePassesOnlyWithAFullBucketAndLeavesDebt() throws {
        var l = try ledger(rate: MiB)
        let big = l.inflate(report(1, [[0, 512]]), now: .zero)  // 2 MiB > 1 MiB capacity, bucket full
        #expect(big.accepted == 1)
        // In debt by 1 MiB: one second later the bucket is at 0, nothing fits.
        let r3 = l.inflate(report(2, [[600, 1]]), now: second)
        #expect(r3.refused.rateLimit == 1)
        let r4 = l.inflate(report(3, [[601, 1]]), now: second * 2 + second / 10)
        #expect(r4.accepted == 1)
    }

    @Test func deflateOfUntrackedIsMalformedAndHarmless() throws {
        var l = try ledger()
        _ = l.inflate(report(1, [[10, 10]]), now: .zero)
        let d = l.deflate(report(2, [[12, 2], [50, 1], [19, 3]]))
        #expect(d.seq == 2)
        #expect(d.accepted == 1)
        #expect(d.refused.malformed == 2)  // [50] never held; [19,22) only partly
        #expect(d.punches.isEmpty)
        #expect(l.held.intervals == [.init(10 * page, 12 * page), .init(14 * page, 19 * page)])
        // Deflated frames may be inflated again.
        let r5 = l.inflate(report(3, [[12, 2]]), now: .zero)
        #expect(r5.accepted == 1)
        #expect(l.held.intervals == [.init(10 * page, 19 * page)])
    }

    @Test func malformedReports() throws {
        var l = try ledger()
        let bad = try GuestEvent(.framesInflated, data: ["seq": 4, "page-size": 4096, "ranges": [["x", 1], [1, 0], [1], 7, [2, 1]]])
        let handled = l.handle(bad, now: .zero)
        let d = try #require(handled)
        #expect(d.refused.malformed == 4)
        #expect(d.accepted == 1)
        #expect(d.seq == 4)
        let badPage = l.inflate(report(5, [[1, 1]], pageSize: 1000), now: .zero)
        #expect(badPage.refused.malformed == 1)
        #expect(badPage.seq == 5)  // still acknowledged
        // Not a report at all (no seq, a range that is not a pair): refused whole.
        let notReport = l.refuseMalformed()
        #expect(notReport.seq == nil)
        #expect(notReport.refused.malformed == 1)
        #expect(l.refused.malformed == 6)
        let r6 = l.handle(.balloonChange(.init(actual: 0, target: 0)), now: .zero)
        #expect(r6 == nil)
        let r7 = l.handle(.framesInflated(report(9, [[40, 1]])), now: .zero)
        #expect(r7?.accepted == 1)
        let r8 = l.handle(.framesDeflated(report(10, [[40, 1]])), now: .zero)
        #expect(r8?.accepted == 1)
    }

    @Test func resetSessionForgetsFramesButKeepsCounters() throws {
        var l = try ledger()
        _ = l.inflate(report(1, [[10, 10], [10, 1]]), now: .zero)
        l.resetSession()
        #expect(l.heldBytes == 0)
        #expect(l.refused.overlap == 1)
        let r8 = l.inflate(report(1, [[10, 10]]), now: .zero)
        #expect(r8.accepted == 1)
    }

    @Test func largePageSizes() throws {
        var l = try ledger(ram: 64 * MiB)
        let d = l.inflate(report(1, [[1, 1], [31, 2]], pageSize: 2 * MiB), now: .zero)
        #expect(punches(d) == [[2 * MiB, 2 * MiB]])
        #expect(d.refused.outsideRam == 1)
    }
}

@Suite struct IntervalSetTests {
    @Test func insertMergesAndRemoveSplits() {
        var s = IntervalSet()
        let r9 = s.insert(10, 20)
        #expect(r9)
        let r10 = s.insert(30, 40)
        #expect(r10)
        let r11 = s.insert(15, 25)
        #expect(!r11)  // overlaps
        let r12 = s.insert(20, 30)
        #expect(r12)  // joins both
        #expect(s.intervals == [.init(10, 40)])
        let r13 = s.remove(15, 18)
        #expect(r13 == 3)
        #expect(s.intervals == [.init(10, 15), .init(18, 40)])
        let r14 = s.remove(0, 100)
        #expect(r14 == 27)
        #expect(s.isEmpty)
        #expect(s.totalLength == 0)
    }

    /// Many tiny ranges against a bitmap model: splits and merges of chunks.
    @Test func randomAgainstAModel() {
        var rng = SeededRandom(seed: 42)
        let universe = 40_000
        var model = [Bool](repeating: false, count: universe)
        var s = IntervalSet()
        for step in 0..<30_000 {
            let start = Int(rng.next() % UInt64(universe - 8))
            let length = Int(rng.next() % 4) + 1
            let end = start + length
            if rng.next() % 3 != 0 {
                let free = !model[start..<end].contains(true)
                #expect(s.overlaps(UInt64(start), UInt64(end)) == !free)
                let r15 = s.insert(UInt64(start), UInt64(end))
                #expect(r15 == free)
                if free { for i in start..<end { model[i] = true } }
            } else {
                let covered = model[start..<end].filter { $0 }.count
                #expect(s.coveredLength(UInt64(start), UInt64(end)) == UInt64(covered))
                let r16 = s.remove(UInt64(start), UInt64(end))
                #expect(r16 == UInt64(covered))
                for i in start..<end { model[i] = false }
            }
            if step % 5000 == 0 || step == 29_999 {
                #expect(s.intervals == intervals(of: model))
                let all = intervals(of: model)
                #expect(s.first == all.first)
                for _ in 0..<50 {
                    let a = rng.next() % UInt64(universe), b = a + rng.next() % 600
                    let inside = all.compactMap { iv -> IntervalSet.Interval? in
                        let lo = max(iv.start, a), hi = min(iv.end, b)
                        return lo < hi ? .init(lo, hi) : nil
                    }
                    #expect(s.intersection(a, b) == inside)
                }
                #expect(s.totalLength == UInt64(model.filter { $0 }.count))
                #expect(s.count == s.intervals.count)
            }
        }
        #expect(s.count > 1500)  // enough to have split chunks
    }

    func intervals(of model: [Bool]) -> [IntervalSet.Interval] {
        var out: [IntervalSet.Interval] = []
        var i = 0
        while i < model.count {
            if model[i] {
                var j = i
                while j < model.count, model[j] { j += 1 }
                out.append(.init(UInt64(i), UInt64(j)))
                i = j
            } else {
                i += 1
            }
        }
        return out
    }
}

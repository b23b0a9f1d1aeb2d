// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import Testing

private let page: UInt64 = 4096
private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

private func report(_ seq: UInt64, _ ranges: [[UInt64]]) -> FrameReport {
    FrameReport(seq: seq, pageSize: page, ranges: ranges.map { FrameRange(pfn: $0[0], count: $0[1]) })
}

private func pairs(_ ranges: [RamMap.FileRange]) -> [[UInt64]] { ranges.map { [$0.offset, $0.length] } }

/// What the host allocates again when the guest takes frames back: only
/// what it had punched, in file offsets, a slice at a time, never a range
/// the guest holds again.
@Suite struct PopulateTests {
    @Test func aDeflatePopulatesOnlyWhatWasPunched() throws {
        // A bucket of 8 pages: the second range of the inflate is refused by
        // the rate limit (reported, never punched: `unfreed`).
        var l = FrameLedger(map: try RamMap.linear(size: 64 * MiB), punchRate: 8 * page, now: .zero)
        let inflated = l.inflate(report(1, [[10, 8], [40, 4]]), now: .zero)
        #expect(pairs(inflated.punches) == [[10 * page, 8 * page]])
        #expect(inflated.refused.rateLimit == 1)
        #expect(inflated.populate.isEmpty)
        // Takes back [12,16) (punched), [40,44) (never punched) and [100,101)
        // (never held: malformed, nothing to allocate).
        let d = l.deflate(report(2, [[12, 4], [40, 4], [100, 1]]))
        #expect(pairs(d.populate) == [[12 * page, 4 * page]])
        #expect(d.refused.malformed == 1)
        // A deflate across a held and an unheld part allocates the held part only.
        let d2 = l.deflate(report(3, [[16, 4]]))
        #expect(pairs(d2.populate) == [[16 * page, 2 * page]])
    }

    @Test func populateRangesAreFileOffsetsCoalesced() throws {
        // A pc machine: guest-physical 4 GiB is file offset 3 GiB.
        var l = FrameLedger(map: try RamMap.pc(ramSize: 4 * GiB), punchRate: 1 << 40, now: .zero)
        let high = 4 * GiB / page
        _ = l.inflate(report(1, [[high, 256], [high + 256, 256], [10, 1]]), now: .zero)
        let d = l.deflate(report(2, [[high + 256, 256], [high, 256], [10, 1]]))
        #expect(pairs(d.populate) == [[10 * page, page], [3 * GiB, 2 * MiB]])
    }

    @Test func theQueueSlicesInOrderAndForgetsCancelledRanges() {
        var q = PopulateQueue()
        #expect(q.next() == nil)
        q.add([.init(offset: 100 * MiB, length: 80 * MiB), .init(offset: 10 * MiB, length: 4 * MiB)])
        q.add([.init(offset: 12 * MiB, length: 4 * MiB)])  // half a repeat: adds 2 MiB
        #expect(q.pendingBytes == 86 * MiB)
        #expect(q.next() == .init(offset: 10 * MiB, length: 6 * MiB))
        // The guest holds [120, 130) MiB again: it must never be allocated now.
        q.cancel([.init(offset: 120 * MiB, length: 10 * MiB)])
        #expect(q.next(maxBytes: 32 * MiB) == .init(offset: 100 * MiB, length: 20 * MiB))
        #expect(q.next(maxBytes: 32 * MiB) == .init(offset: 130 * MiB, length: 32 * MiB))
        #expect(q.next(maxBytes: 32 * MiB) == .init(offset: 162 * MiB, length: 18 * MiB))
        #expect(q.next() == nil)
        #expect(q.isEmpty)
        q.add([.init(offset: 0, length: MiB)])
        q.removeAll()
        #expect(q.next() == nil)
    }

    @Test func populateAllocatesPunchedBlocksAsZerosAndNothingElse() throws {
        let file = ShmFile(size: Int(16 * MiB))
        defer { file.remove() }
        let full = file.status()
        let puncher = try BackendPuncher(path: file.path, ramSize: 8 * MiB)
        var ledger = FrameLedger(map: try RamMap.linear(size: puncher.ramSize), punchRate: 1 << 40, now: .zero)
        let inflated = ledger.inflate(report(1, [[256, 512]]), now: .zero)  // 2 MiB at 1 MiB
        puncher.punch(inflated.punches)
        #expect(full.blocks - file.status().blocks == 2 * MiB / 512)
        let deflated = ledger.deflate(report(2, [[256, 256]]))  // the first MiB back
        var queue = PopulateQueue()
        queue.add(deflated.populate)
        while let slice = queue.next(maxBytes: 256 * 1024) {
            #expect(puncher.populate(slice))
        }
        #expect(puncher.bytesPopulated == MiB)
        #expect(full.blocks - file.status().blocks == MiB / 512)  // allocated again
        #expect(file.status().size == 16 * MiB)
        #expect(file.isFilled(MiB, Int(MiB), with: 0))  // as the guest left it: zeros
        #expect(file.isFilled(0, Int(MiB), with: 0xAB))
        #expect(file.isFilled(3 * MiB, Int(13 * MiB), with: 0xAB))
        // Populating data that is there changes nothing, and nothing past guest RAM is touched.
        #expect(puncher.populate(.init(offset: 0, length: MiB)))
        #expect(file.isFilled(0, Int(MiB), with: 0xAB))
        #expect(!puncher.populate(.init(offset: 8 * MiB - page, length: 2 * page)))
        #expect(puncher.populateFailures == 0)
    }
}

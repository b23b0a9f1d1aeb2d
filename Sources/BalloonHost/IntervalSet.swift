// SPDX-License-Identifier: Apache-2.0
/// A set of disjoint half-open ranges [start, end) of UInt64, kept sorted and
/// coalesced (touching ranges become one). Used for the guest frames a host
/// holds: a guest may report millions of frames as a few thousand ranges,
/// and an untrusted one may report many tiny ranges, so the ranges are kept
/// in sorted chunks of bounded size: lookups are two binary searches, an
/// insert or removal moves at most one chunk's elements plus the chunk index.
///
/// Pure value type, no syscalls.
public struct IntervalSet: Sendable, Equatable {
    public struct Interval: Sendable, Equatable, CustomStringConvertible {
        public var start: UInt64
        public var end: UInt64
        public init(_ start: UInt64, _ end: UInt64) {
            self.start = start
            self.end = end
        }
        public var length: UInt64 { end - start }
        public var description: String { "[\(start), \(end))" }
    }

    /// Chunks are split above this many intervals and merged when small.
    static let chunkLimit = 512

    private var chunks: [[Interval]] = []
    /// The bytes (units) covered.
    public private(set) var totalLength: UInt64 = 0
    /// The number of disjoint intervals.
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// The lowest interval.
    public var first: Interval? { chunks.first?.first }

    /// Every interval in order (tests, diagnostics).
    public var intervals: [Interval] { chunks.flatMap { $0 } }

    public mutating func removeAll() {
        chunks.removeAll()
        totalLength = 0
        count = 0
    }

    private struct Position { var chunk: Int; var index: Int }

    /// The last interval whose start ≤ x.
    private func locate(_ x: UInt64) -> Position? {
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunks[mid][0].start <= x { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let c = lo - 1
        let chunk = chunks[c]
        var l = 0, h = chunk.count
        while l < h {
            let mid = (l + h) / 2
            if chunk[mid].start <= x { l = mid + 1 } else { h = mid }
        }
        return Position(chunk: c, index: l - 1)
    }

    private func next(_ p: Position?) -> Position? {
        guard let p else { return chunks.isEmpty ? nil : Position(chunk: 0, index: 0) }
        if p.index + 1 < chunks[p.chunk].count { return Position(chunk: p.chunk, index: p.index + 1) }
        if p.chunk + 1 < chunks.count { return Position(chunk: p.chunk + 1, index: 0) }
        return nil
    }

    private subscript(_ p: Position) -> Interval {
        get { chunks[p.chunk][p.index] }
        set { chunks[p.chunk][p.index] = newValue }
    }

    /// Whether any point of [start, end) is in the set.
    public func overlaps(_ start: UInt64, _ end: UInt64) -> Bool {
        guard start < end, let p = locate(end - 1) else { return false }
        return self[p].end > start
    }

    /// How much of [start, end) is in the set.
    public func coveredLength(_ start: UInt64, _ end: UInt64) -> UInt64 {
        intersection(start, end).reduce(0) { $0 + $1.length }
    }

    /// The parts of the set inside [start, end), in order.
    public func intersection(_ start: UInt64, _ end: UInt64) -> [Interval] {
        guard start < end else { return [] }
        var p = locate(start)
        if let q = p, self[q].end <= start { p = next(q) } else if p == nil { p = next(nil) }
        var out: [Interval] = []
        while let q = p, self[q].start < end {
            let iv = self[q]
            out.append(Interval(max(iv.start, start), min(iv.end, end)))
            p = next(q)
        }
        return out
    }

    /// Adds [start, end), which must not overlap the set (check `overlaps`
    /// first); touching neighbours are merged. Returns false (and changes
    /// nothing) if it overlaps or is empty.
    @discardableResult
    public mutating func insert(_ start: UInt64, _ end: UInt64) -> Bool {
        guard start < end, !overlaps(start, end) else { return false }
        let before = locate(start)
        let after = next(before)
        let joinLeft = before.map { self[$0].end == start } ?? false
        let joinRight = after.map { self[$0].start == end } ?? false
        totalLength += end - start
        switch (joinLeft, joinRight) {
        case (true, true):
            self[before!].end = self[after!].end
            removeInterval(at: after!)
        case (true, false):
            self[before!].end = end
        case (false, true):
            self[after!].start = start
        case (false, false):
            count += 1
            if chunks.isEmpty {
                chunks.append([Interval(start, end)])
            } else if let b = before {
                chunks[b.chunk].insert(Interval(start, end), at: b.index + 1)
                splitIfLarge(b.chunk)
            } else {
                chunks[0].insert(Interval(start, end), at: 0)
                splitIfLarge(0)
            }
        }
        return true
    }

    /// Removes [start, end) from the set, splitting intervals as needed.
    /// Returns how much was actually removed.
    @discardableResult
    public mutating func remove(_ start: UInt64, _ end: UInt64) -> UInt64 {
        guard start < end else { return 0 }
        var removed: UInt64 = 0
        var p = locate(start)
        if let q = p, self[q].end <= start { p = next(q) } else if p == nil { p = next(nil) }
        while let q = p, self[q].start < end {
            let iv = self[q]
            removed += min(iv.end, end) - max(iv.start, start)
            if iv.start < start && iv.end > end {
                // A hole in the middle: keep the left part, add the right part.
                self[q].end = start
                chunks[q.chunk].insert(Interval(end, iv.end), at: q.index + 1)
                count += 1
                splitIfLarge(q.chunk)
                break
            } else if iv.start < start {
                self[q].end = start
                p = next(q)
            } else if iv.end > end {
                self[q].start = end
                break
            } else {
                // Entirely covered: drop it, then continue after its predecessor.
                removeInterval(at: q)
                p = next(locate(iv.start))
            }
        }
        totalLength -= removed
        return removed
    }

    /// Drops one interval (its length is accounted for by the caller).
    private mutating func removeInterval(at p: Position) {
        chunks[p.chunk].remove(at: p.index)
        count -= 1
        if chunks[p.chunk].isEmpty {
            chunks.remove(at: p.chunk)
        } else if chunks[p.chunk].count < IntervalSet.chunkLimit / 4, p.chunk + 1 < chunks.count,
            chunks[p.chunk].count + chunks[p.chunk + 1].count <= IntervalSet.chunkLimit
        {
            // Keep the chunk index short after many removals. (Only ever
            // merges with the next chunk, so positions before p stay valid.)
            chunks[p.chunk].append(contentsOf: chunks[p.chunk + 1])
            chunks.remove(at: p.chunk + 1)
        }
    }

    private mutating func splitIfLarge(_ c: Int) {
        guard chunks[c].count > IntervalSet.chunkLimit * 2 else { return }
        let tail = Array(chunks[c][IntervalSet.chunkLimit...])
        chunks[c].removeSubrange(IntervalSet.chunkLimit...)
        chunks.insert(tail, at: c + 1)
    }

    public static func == (a: IntervalSet, b: IntervalSet) -> Bool { a.intervals == b.intervals }
}

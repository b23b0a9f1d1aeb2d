// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// A run of consecutive guest frames behind consecutive pages of a chunk:
/// pages [pageOffset, pageOffset+count) of the chunk are frames [pfn, pfn+count).
public struct FrameRun: Sendable, Equatable {
    public var pageOffset: Int
    public var pfn: UInt64
    public var count: Int

    public init(pageOffset: Int, pfn: UInt64, count: Int) {
        self.pageOffset = pageOffset
        self.pfn = pfn
        self.count = count
    }
}


public enum Frames {
    /// Builds runs from one frame number per page (nil: page not present).
    public static func runs(pfns: some Sequence<UInt64?>) -> [FrameRun] {
        var runs: [FrameRun] = []
        for (offset, pfn) in pfns.enumerated() {
            guard let pfn else { continue }
            if var last = runs.last, last.pageOffset + last.count == offset, last.pfn + UInt64(last.count) == pfn {
                last.count += 1
                runs[runs.count - 1] = last
            } else {
                runs.append(FrameRun(pageOffset: offset, pfn: pfn, count: 1))
            }
        }
        return runs
    }

    /// Frame ranges sorted by frame number, adjacent ones merged.
    public static func ranges(_ runs: some Sequence<FrameRun>) -> [FrameRange] {
        let sorted = runs.map { FrameRange(pfn: $0.pfn, count: UInt64($0.count)) }.sorted()
        var merged: [FrameRange] = []
        for range in sorted where range.count > 0 {
            if var last = merged.last, last.pfn + last.count == range.pfn {
                last.count += range.count
                merged[merged.count - 1] = last
            } else {
                merged.append(range)
            }
        }
        return merged
    }

    /// The runs covering pages at or after `pageOffset` (a chunk's tail), and
    /// the runs before it.
    public static func split(_ runs: [FrameRun], atPage pageOffset: Int) -> (head: [FrameRun], tail: [FrameRun]) {
        var head: [FrameRun] = [], tail: [FrameRun] = []
        for run in runs {
            if run.pageOffset + run.count <= pageOffset {
                head.append(run)
            } else if run.pageOffset >= pageOffset {
                tail.append(run)
            } else {
                let inHead = pageOffset - run.pageOffset
                head.append(FrameRun(pageOffset: run.pageOffset, pfn: run.pfn, count: inHead))
                tail.append(FrameRun(pageOffset: pageOffset, pfn: run.pfn + UInt64(inHead), count: run.count - inHead))
            }
        }
        return (head, tail)
    }

    /// Pages whose frame changed between two reads of the same chunk: the
    /// frames that left (old) and the frames that replaced them (new).
    public static func moved(from old: [FrameRun], to new: [FrameRun], pages: Int) -> (left: [FrameRun], arrived: [FrameRun]) {
        guard old != new else { return ([], []) }
        let before = expand(old, pages: pages), after = expand(new, pages: pages)
        var left: [UInt64?] = Array(repeating: nil, count: pages)
        var arrived: [UInt64?] = Array(repeating: nil, count: pages)
        for page in 0..<pages where before[page] != after[page] {
            left[page] = before[page]
            arrived[page] = after[page]
        }
        return (runs(pfns: left), runs(pfns: arrived))
    }

    static func expand(_ runs: [FrameRun], pages: Int) -> [UInt64?] {
        var out: [UInt64?] = Array(repeating: nil, count: pages)
        for run in runs {
            for i in 0..<run.count where run.pageOffset + i < pages { out[run.pageOffset + i] = run.pfn + UInt64(i) }
        }
        return out
    }

    public static func frameCount(_ runs: [FrameRun]) -> Int { runs.reduce(0) { $0 + $1.count } }
}

/// Whether a periodic rescan of the balloon's frames can find a page that
/// moved: only if the kernel moved or replaced pages anywhere since the frames
/// were last read, which its counters say (/proc/vmstat `pgmigrate_success`:
/// compaction, NUMA balancing, offlining, CMA all migrate; `thp_collapse_alloc`:
/// khugepaged copies pages into a new huge page). A rescan of a large balloon
/// reads every page's pagemap entry, the biggest single cost of an idle daemon;
/// a skipped one that could have found a move costs only host memory, never
/// the guest's (the old frame is the guest's again, the new one still backed).
/// An unknown count (a kernel without the counters) always rescans.
public struct RescanGate: Sendable, Equatable {
    private var movedAtLastRead: UInt64?

    public init() {}

    /// The frames were read when the kernel's count of moved pages was `moved`.
    public mutating func framesRead(moved: UInt64?) { movedAtLastRead = moved }

    /// A periodic rescan is due: whether it can find anything.
    public func worthRescanning(moved: UInt64?) -> Bool {
        guard let moved, let movedAtLastRead else { return true }
        return moved != movedAtLastRead
    }
}

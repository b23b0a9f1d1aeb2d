// SPDX-License-Identifier: Apache-2.0
/// A range of guest frames as FRAMES_INFLATED / FRAMES_DEFLATED carry it:
/// `[PFN, COUNT]`, COUNT frames of the event's page size from frame PFN.
public struct FrameRange: Sendable, Equatable, Comparable {
    public var pfn: UInt64
    public var count: UInt64

    public init(pfn: UInt64, count: UInt64) {
        self.pfn = pfn
        self.count = count
    }

    public static func < (a: FrameRange, b: FrameRange) -> Bool { a.pfn < b.pfn }

    public var json: JSON { .array([.uint(pfn), .uint(count)]) }

    /// nil unless `json` is a pair of non-negative integers.
    public init?(json: JSON) {
        guard let pair = json.array, pair.count == 2, let pfn = pair[0].uint64, let count = pair[1].uint64 else { return nil }
        self.init(pfn: pfn, count: count)
    }
}

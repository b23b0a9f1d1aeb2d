// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

// The host's view of the frames a guest's balloon holds (docs/protocol.md
// "Frame reporting"), and the checks every reported range must pass before
// the memory behind it is freed. The guest is untrusted (rule 4): a range is
// freed only if it lies entirely in guest RAM, overlaps nothing the guest
// already reported (nor another range of the same event), and fits the rate
// limit. Pure: the caller supplies the clock and does the punching.

/// A token bucket in bytes: `rate` bytes per second, holding at most
/// `capacity`. A request larger than the capacity passes when the bucket is
/// full and leaves it in debt, so the long-run rate holds either way.
public struct TokenBucket: Sendable, Equatable {
    public let rate: UInt64
    public let capacity: UInt64
    public private(set) var tokens: Double
    private var last: Duration

    /// Starts full at `now` (on a monotonic clock).
    public init(rate: UInt64, capacity: UInt64, now: Duration) {
        self.rate = rate
        self.capacity = max(capacity, 1)
        tokens = Double(self.capacity)
        last = now
    }

    private mutating func refill(_ now: Duration) {
        if now > last {
            tokens = min(Double(capacity), tokens + Double(rate) * (now - last).seconds)
        }
        last = max(last, now)
    }

    /// Takes `bytes` if they fit now; false (nothing taken) otherwise.
    public mutating func take(_ bytes: UInt64, now: Duration) -> Bool {
        refill(now)
        let need = Double(min(bytes, capacity))
        guard tokens >= need else { return false }
        tokens -= Double(bytes)
        return true
    }
}

/// What to do about one `FRAMES_*` event.
public struct FrameDecision: Sendable, Equatable {
    /// The `seq` to acknowledge once acted upon (nil: the event was not a report).
    public var seq: UInt64?
    /// File ranges to punch, sorted by offset, adjacent ones coalesced.
    public var punches: [RamMap.FileRange] = []
    /// File ranges the guest took back that had been punched (a deflate),
    /// sorted and coalesced: the host may allocate them again ahead of the
    /// guest's first touch (`PopulateQueue`).
    public var populate: [RamMap.FileRange] = []
    /// Ranges accepted (inflated: to be freed; deflated: released).
    public var accepted = 0
    /// What this event added to the refusal counters.
    public var refused = RefusalCounters()

    public init(seq: UInt64?) { self.seq = seq }

    public var punchBytes: UInt64 { punches.reduce(0) { $0 + $1.length } }
}

/// The frames a guest holds, validated against a RAM map and a rate limit.
public struct FrameLedger: Sendable {
    public let map: RamMap
    public private(set) var bucket: TokenBucket
    /// Guest-physical byte ranges reported held and freed (punched).
    public private(set) var held = IntervalSet()
    /// Reported held but refused by the rate limit: not freed, yet still the
    /// guest's (a repeat overlaps them; a deflate releases them quietly).
    public private(set) var unfreed = IntervalSet()
    public private(set) var refused = RefusalCounters()
    /// The page size of the last valid event (for counting frames).
    public private(set) var pageSize: UInt64 = 4096

    /// `punchRate` bytes per second with a one-second burst.
    public init(map: RamMap, punchRate: UInt64, now: Duration) {
        self.map = map
        bucket = TokenBucket(rate: punchRate, capacity: punchRate, now: now)
    }

    /// The default rate: the guest's RAM per second.
    public static func defaultPunchRate(for map: RamMap) -> UInt64 { max(map.ramSize, 1) }

    public var heldBytes: UInt64 { held.totalLength }
    public var heldFrames: UInt64 { held.totalLength / pageSize }

    /// The session ended (rule 3): forget everything the guest reported; on
    /// reconnect it reports the full set anew. Counters stay.
    public mutating func resetSession() {
        held.removeAll()
        unfreed.removeAll()
    }

    /// Handles a `FRAMES_*` event; nil for the other events.
    public mutating func handle(_ event: GuestEvent, now: Duration) -> FrameDecision? {
        switch event {
        case let .framesInflated(report): return inflate(report, now: now)
        case let .framesDeflated(report): return deflate(report)
        case .balloonChange, .targetReached, .targetUnreachable, .stats, .deflated: return nil
        }
    }

    /// A `FRAMES_*` event that is not a report at all (no `seq`, no
    /// `page-size`, `ranges` not an array): refused whole, nothing to acknowledge.
    public mutating func refuseMalformed() -> FrameDecision {
        var decision = FrameDecision(seq: nil)
        decision.refused.malformed = 1
        add(decision.refused)
        return decision
    }

    /// Validated GPA byte ranges of a report; invalid entries counted.
    private mutating func gpaRanges(_ report: FrameReport, _ decision: inout FrameDecision) -> [(start: UInt64, end: UInt64)?]? {
        let pageSize = report.pageSize
        guard FrameReport.validPageSize(pageSize) else {
            decision.refused.malformed += 1
            return nil
        }
        self.pageSize = pageSize
        decision.refused.malformed += UInt64(report.unreadableRanges)
        return report.ranges.map { run -> (start: UInt64, end: UInt64)? in
            // An empty range is as malformed as a non-pair.
            guard run.count > 0 else { decision.refused.malformed += 1; return nil }
            let (start, o1) = run.pfn.multipliedReportingOverflow(by: pageSize)
            let (length, o2) = run.count.multipliedReportingOverflow(by: pageSize)
            let (end, o3) = start.addingReportingOverflow(length)
            // Not addressable at all: outside any RAM.
            guard !o1, !o2, !o3 else { decision.refused.outsideRam += 1; return nil }
            return (start, end)
        }
    }

    /// `FRAMES_INFLATED`: each range must be in RAM, new, and within the rate.
    public mutating func inflate(_ report: FrameReport, now: Duration) -> FrameDecision {
        var decision = FrameDecision(seq: report.seq)
        defer { add(decision.refused) }
        guard let ranges = gpaRanges(report, &decision) else { return decision }
        var seenThisEvent = IntervalSet()
        var pieces: [RamMap.FileRange] = []
        for case let (start, end)? in ranges {
            guard let filePieces = map.translate(gpa: start, length: end - start) else {
                decision.refused.outsideRam += 1
                continue
            }
            let repeated = seenThisEvent.overlaps(start, end)
            if !repeated { seenThisEvent.insert(start, end) }
            if repeated || held.overlaps(start, end) || unfreed.overlaps(start, end) {
                decision.refused.overlap += 1
                continue
            }
            guard bucket.take(end - start, now: now) else {
                decision.refused.rateLimit += 1
                unfreed.insert(start, end)
                continue
            }
            held.insert(start, end)
            pieces.append(contentsOf: filePieces)
            decision.accepted += 1
        }
        decision.punches = FrameLedger.coalesce(pieces)
        return decision
    }

    /// `FRAMES_DEFLATED`: the guest takes the frames back; a range (or part)
    /// it did not hold is counted as malformed and otherwise ignored.
    public mutating func deflate(_ report: FrameReport) -> FrameDecision {
        var decision = FrameDecision(seq: report.seq)
        defer { add(decision.refused) }
        guard let ranges = gpaRanges(report, &decision) else { return decision }
        var pieces: [RamMap.FileRange] = []
        for case let (start, end)? in ranges {
            // Only what was punched needs memory again (`unfreed` never lost it).
            for part in held.intersection(start, end) {
                pieces.append(contentsOf: map.translate(gpa: part.start, length: part.length) ?? [])
            }
            let removed = held.remove(start, end) + unfreed.remove(start, end)
            if removed == end - start {
                decision.accepted += 1
            } else {
                decision.refused.malformed += 1
            }
        }
        decision.populate = FrameLedger.coalesce(pieces)
        return decision
    }

    private mutating func add(_ r: RefusalCounters) {
        refused.outsideRam += r.outsideRam
        refused.overlap += r.overlap
        refused.rateLimit += r.rateLimit
        refused.malformed += r.malformed
    }

    /// Sorted by offset, touching pieces merged: one fallocate each.
    public static func coalesce(_ pieces: [RamMap.FileRange]) -> [RamMap.FileRange] {
        var out: [RamMap.FileRange] = []
        for piece in pieces.sorted(by: { $0.offset < $1.offset }) where piece.length > 0 {
            if let last = out.last, last.end == piece.offset {
                out[out.count - 1].length += piece.length
            } else {
                out.append(piece)
            }
        }
        return out
    }
}

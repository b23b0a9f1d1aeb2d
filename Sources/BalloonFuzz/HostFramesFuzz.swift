// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol

/// What the host does with bytes from an untrusted guest: frame lines, decode
/// events, and let the frame ledger decide what to punch. Checked against an
/// independent model of the punched file ranges (the ledger's own interval
/// sets and RamMap.translate are what is under test):
/// - every punch lies inside the RAM map's file ranges;
/// - no punch overlaps a range still punched (deflates release theirs);
/// - the ledger holds exactly what the model holds;
/// - punched bytes ≤ capacity + rate × elapsed + the largest range (a range
///   larger than the bucket passes when it is full and leaves it in debt:
///   FrameLedger.swift's TokenBucket).
public enum HostFramesFuzz {
    /// A small rate so the limit is reached within a few lines.
    static let punchRate: UInt64 = 1 << 20
    /// The simulated clock's step per line.
    static let step: Duration = .milliseconds(10)

    /// The first byte picks the map: linear 1 GiB, `pc` 4 GiB (3 GiB low,
    /// PCI hole, 1 GiB at 4 GiB), `q35` 3 GiB (2 GiB low, 1 GiB at 4 GiB).
    static func map(_ selector: UInt8) -> RamMap {
        do {
            switch selector % 3 {
            case 0: return try .linear(size: 1 << 30)
            case 1: return try .pc(ramSize: 4 << 30)
            default: return try .q35(ramSize: 3 << 30)
            }
        } catch { preconditionFailure("preset RAM map refused: \(error)") }
    }

    public static func run(_ data: UnsafeRawBufferPointer) {
        guard let selector = data.first else { return }
        let map = map(selector)
        let start = Duration.seconds(1_000)
        var now = start
        var ledger = FrameLedger(map: map, punchRate: punchRate, now: now)
        var framer = LineFramer()
        var model = PunchModel()
        // The map's file ranges, merged where adjacent in the file.
        let fileRanges = PunchModel.merged(map.entries.map { ($0.offset, $0.offset + $0.size) })
        var punched: UInt64 = 0
        var largest: UInt64 = 0

        for case let .line(line) in framer.feed(UnsafeRawBufferPointer(rebasing: data.dropFirst())) {
            now += step
            guard case let .event(event)? = try? Message.decode(line) else { continue }
            guard let typed = try? GuestEvent(event) else {
                if event.name.hasPrefix("FRAMES_") {
                    let decision = ledger.refuseMalformed()
                    precondition(decision.punches.isEmpty && decision.seq == nil)
                }
                continue
            }
            guard let decision = ledger.handle(typed, now: now) else {
                precondition(typed.frameReport == nil, "a FRAMES_* event was not handled")
                continue
            }
            guard let report = typed.frameReport else { preconditionFailure("a decision for a non-frames event") }
            precondition(decision.seq == report.seq)
            if FrameReport.validPageSize(report.pageSize) {
                for range in report.ranges {
                    let (bytes, overflow) = range.count.multipliedReportingOverflow(by: report.pageSize)
                    if !overflow { largest = max(largest, min(bytes, map.ramSize)) }
                }
            }

            switch typed {
            case .framesInflated:
                var previousEnd: UInt64 = 0
                for punch in decision.punches {
                    precondition(punch.length > 0 && punch.offset >= previousEnd, "punches not sorted and disjoint")
                    previousEnd = punch.end
                    precondition(fileRanges.contains { $0.start <= punch.offset && punch.end <= $0.end },
                                 "punch \(punch) outside guest RAM (\(map))")
                    precondition(!model.overlaps(punch.offset, punch.end), "punch \(punch) overlaps a range still held")
                    model.insert(punch.offset, punch.end)
                    punched += punch.length
                }
                let elapsed = Double((now - start).components.seconds) + Double((now - start).components.attoseconds) * 1e-18
                let bound = Double(ledger.bucket.capacity) + Double(punchRate) * elapsed + Double(largest)
                precondition(Double(punched) <= bound + 1, "punched \(punched) bytes, more than the rate allows (\(bound))")
            case .framesDeflated:
                precondition(decision.punches.isEmpty, "a deflate punched")
                guard FrameReport.validPageSize(report.pageSize) else { break }
                for range in report.ranges where range.count > 0 {
                    let (s, o1) = range.pfn.multipliedReportingOverflow(by: report.pageSize)
                    let (n, o2) = range.count.multipliedReportingOverflow(by: report.pageSize)
                    let (e, o3) = s.addingReportingOverflow(n)
                    guard !o1, !o2, !o3 else { continue }
                    // The same GPA range in the file, entry by entry.
                    for entry in map.entries {
                        let lo = max(s, entry.gpa), hi = min(e, entry.gpaEnd)
                        if lo < hi { model.remove(entry.offset + (lo - entry.gpa), entry.offset + (hi - entry.gpa)) }
                    }
                }
            default: preconditionFailure("unreachable")
            }
            precondition(ledger.heldBytes == model.total, "ledger holds \(ledger.heldBytes) bytes, the model \(model.total)")
        }
    }
}

/// Disjoint half-open ranges, sorted; plain arrays, deliberately not IntervalSet.
struct PunchModel {
    private(set) var ranges: [(start: UInt64, end: UInt64)] = []
    private(set) var total: UInt64 = 0

    func overlaps(_ start: UInt64, _ end: UInt64) -> Bool {
        ranges.contains { $0.start < end && start < $0.end }
    }

    mutating func insert(_ start: UInt64, _ end: UInt64) {
        ranges.append((start, end))
        ranges.sort { $0.start < $1.start }
        total += end - start
    }

    mutating func remove(_ start: UInt64, _ end: UInt64) {
        var kept: [(start: UInt64, end: UInt64)] = []
        for r in ranges {
            guard r.start < end && start < r.end else { kept.append(r); continue }
            total -= min(r.end, end) - max(r.start, start)
            if r.start < start { kept.append((r.start, start)) }
            if end < r.end { kept.append((end, r.end)) }
        }
        ranges = kept
    }

    static func merged(_ input: [(UInt64, UInt64)]) -> [(start: UInt64, end: UInt64)] {
        var out: [(start: UInt64, end: UInt64)] = []
        for (s, e) in input.sorted(by: { $0.0 < $1.0 }) {
            if let last = out.last, last.end == s { out[out.count - 1].end = e } else { out.append((s, e)) }
        }
        return out
    }
}

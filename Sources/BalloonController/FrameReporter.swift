// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// A chunk's frame-reporting state, kept with the chunk (and split with it).
public final class ReportedFrames {
    /// Frames behind the chunk's pages, known while reporting is on.
    public var runs: [FrameRun]
    /// The FRAMES_INFLATED that reported `runs`.
    public var reportedSeq: UInt64?
    /// Reported but never acknowledged when reporting ended: a host may
    /// still be freeing it, so it is not released before this time.
    public var holdUntil: Duration?

    public init(runs: [FrameRun] = [], reportedSeq: UInt64? = nil, holdUntil: Duration? = nil) {
        self.runs = runs
        self.reportedSeq = reportedSeq
        self.holdUntil = holdUntil
    }
}

/// The bookkeeping of frame reporting (docs/protocol.md, "Frame reporting:
/// ordering"), pure and driven by a clock it does not own: sequence numbers,
/// the host's acknowledgements, and releases that wait for an
/// acknowledgement or the end of the grace time. Memory whose inflate report
/// the host has not acknowledged stays locked until the host acknowledges
/// the deflate, goes away, or the grace time passes.
public final class FrameReporter {
    public static let defaultGrace: Duration = .seconds(5)

    private struct PendingRelease {
        var bytes: UInt64
        var release: () -> Void
        var waitFor: UInt64
        var deadline: Duration
    }

    public let pageSize: UInt64
    /// How long memory a host may still be freeing is held at most.
    public var grace: Duration
    public private(set) var enabled = false
    private let clock: MonotonicClock
    private var seq: UInt64 = 0
    /// The host acknowledged every event up to this one.
    public private(set) var ackedSeq: UInt64 = 0
    private var pending: [PendingRelease] = []
    /// Where FRAMES_* events go (the controller's queue).
    public var emit: (GuestEvent) -> Void = { _ in }

    public init(clock: MonotonicClock, pageSize: UInt64, grace: Duration = FrameReporter.defaultGrace) {
        self.clock = clock
        self.pageSize = pageSize
        self.grace = grace
    }

    /// Bytes still locked while waiting for the host (not part of `actual`).
    public var pendingBytes: UInt64 { pending.reduce(0) { $0 + $1.bytes } }

    /// Whether a host may still free this chunk's frames: reported and not
    /// acknowledged, or reporting ended before the ack and the grace time
    /// has not passed. Such memory must outlive even the daemon (its holder
    /// lingers for the grace time).
    public func mayBeFreedByHost(_ chunk: ReportedFrames) -> Bool {
        if let seq = chunk.reportedSeq, seq > ackedSeq { return true }
        if let holdUntil = chunk.holdUntil, holdUntil > clock.now { return true }
        return false
    }

    /// When the earliest pending release must happen regardless of the host.
    public var nextDeadline: Duration? { pending.map(\.deadline).min() }

    public func enable() { enabled = true }

    /// Reporting off (the host asked, or went away). A host may still have a
    /// free in flight for frames it never acknowledged (it may not even have
    /// read the report yet), so such memory waits out the grace time before
    /// it can be released; acknowledged memory is free to go.
    public func disable(_ chunks: [ReportedFrames]) {
        enabled = false
        let holdUntil = clock.now + grace
        for chunk in chunks {
            if let seq = chunk.reportedSeq, seq > ackedSeq { chunk.holdUntil = holdUntil }
            chunk.runs = []
            chunk.reportedSeq = nil
        }
    }

    /// Reports a chunk's frames (FRAMES_INFLATED).
    public func reportInflated(_ chunk: ReportedFrames, runs: [FrameRun]) {
        chunk.runs = runs
        chunk.reportedSeq = send(runs, inflated: true)
    }

    /// Memory leaves the balloon: runs `release` now, or once the host
    /// acknowledged the deflate report (or the grace time ended). Returns
    /// whether it ran now.
    @discardableResult
    public func release(_ bytes: UInt64, of chunk: ReportedFrames, _ release: @escaping () -> Void) -> Bool {
        let now = clock.now
        guard enabled, let reportedSeq = chunk.reportedSeq, !chunk.runs.isEmpty else {
            if let holdUntil = chunk.holdUntil, holdUntil > now {
                pending.append(PendingRelease(bytes: bytes, release: release, waitFor: .max, deadline: holdUntil))
                return false
            }
            release()
            return true
        }
        let deflatedSeq = send(chunk.runs, inflated: false)
        if reportedSeq <= ackedSeq {
            release()  // The host has nothing in flight for these frames.
            return true
        }
        pending.append(PendingRelease(bytes: bytes, release: release, waitFor: deflatedSeq, deadline: now + grace))
        return false
    }

    /// A chunk that is already gone (its holder was killed): the host is
    /// told its frames left the balloon; there is nothing to release.
    public func lost(_ chunk: ReportedFrames) {
        if enabled, chunk.reportedSeq != nil, !chunk.runs.isEmpty { _ = send(chunk.runs, inflated: false) }
    }

    /// The host finished acting on every FRAMES_* event up to `seq`.
    public func acknowledge(_ seq: UInt64, chunks: [ReportedFrames]) {
        ackedSeq = max(ackedSeq, min(seq, self.seq))
        for chunk in chunks { if let r = chunk.reportedSeq, r <= ackedSeq { chunk.holdUntil = nil } }
        pending.removeAll { p in
            guard p.waitFor <= ackedSeq else { return false }
            p.release()
            return true
        }
    }

    /// Releases what waited past its grace time; returns how many bytes.
    public func releaseExpired() -> UInt64 {
        let now = clock.now
        var released: UInt64 = 0
        pending.removeAll { p in
            guard p.deadline <= now else { return false }
            released += p.bytes
            p.release()
            return true
        }
        return released
    }

    /// Releases everything waiting, without waiting for anyone (shutdown).
    public func releaseAll() {
        for p in pending { p.release() }
        pending.removeAll()
    }

    /// A fresh read of a chunk's frames: reports the frames that moved;
    /// returns how many pages changed frame.
    public func rescanned(_ chunk: ReportedFrames, fresh: [FrameRun], pages: Int) -> Int {
        guard enabled else { return 0 }
        let (left, arrived) = Frames.moved(from: chunk.runs, to: fresh, pages: pages)
        guard !left.isEmpty || !arrived.isEmpty else { return 0 }
        if !left.isEmpty { _ = send(left, inflated: false) }
        chunk.runs = fresh
        if !arrived.isEmpty { chunk.reportedSeq = send(arrived, inflated: true) }
        return max(Frames.frameCount(left), Frames.frameCount(arrived))
    }

    /// Sends one FRAMES_* event; returns its sequence number.
    private func send(_ runs: [FrameRun], inflated: Bool) -> UInt64 {
        seq += 1
        let report = FrameReport(seq: seq, pageSize: pageSize, ranges: Frames.ranges(runs))
        emit(inflated ? .framesInflated(report) : .framesDeflated(report))
        return seq
    }
}

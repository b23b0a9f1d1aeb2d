import Glibc
import BalloonController
import BalloonProtocol
import BalloonSystem

/// The balloon's memory: a stack of mlocked anonymous regions, one a chunk.
/// Deflation gives back the newest memory first, shrinking a region's tail
/// when the target falls inside it.
///
/// With frame reporting on (docs/protocol.md, "Frame reporting: ordering"),
/// a chunk's frames are reported once it is locked, and reported again before
/// it is released; memory whose inflate report the host has not acknowledged
/// stays locked until the host acknowledges the deflate, goes away, or the
/// grace time passes.
public final class RegionReserver: MemoryReserver {
    public static let releaseGraceMilliseconds: UInt64 = 5000

    /// Where a chunk's memory lives: in this process, or in a holder child.
    enum Memory {
        case local(LockedRegion)
        case holder(HolderProcess)

        var length: Int {
            switch self {
            case let .local(r): r.length
            case let .holder(h): h.length
            }
        }

        var address: UInt {
            switch self {
            case let .local(r): UInt(bitPattern: r.base)
            case let .holder(h): h.address
            }
        }

        var pagemapPath: String {
            switch self {
            case .local: "/proc/self/pagemap"
            case let .holder(h): "/proc/\(h.pid)/pagemap"
            }
        }

        func release() {
            switch self {
            case let .local(r): r.release()
            case let .holder(h): h.release()
            }
        }

        /// Keeps the first `keep` bytes; returns how to give the rest back,
        /// now or later.
        func splitTail(keeping keep: Int) -> (length: Int, release: () -> Void) {
            switch self {
            case let .local(r):
                let before = r.length
                guard let tail = r.detachTail(at: keep) else { return (0, {}) }
                return (before - keep, { tail.release() })
            case let .holder(h):
                // One process holds the whole chunk: the tail goes when the
                // holder is told to shrink (never growing it back).
                return (h.length - keep, { h.shrink(to: min(keep, h.length)) })
            }
        }
    }

    final class Chunk {
        var memory: Memory
        /// Bytes of `memory` still in the balloon (a tail may be waiting to go).
        var length: Int
        /// Frames behind the chunk's pages, known while reporting is on.
        var frames: [FrameRun] = []
        /// The FRAMES_INFLATED that reported `frames`.
        var reportedSeq: UInt64?
        /// Reported but never acknowledged when reporting ended: a host may
        /// still be freeing it, so it is not released before this time.
        var holdUntil: UInt64?
        init(_ memory: Memory) {
            self.memory = memory
            self.length = memory.length
        }
        var pages: Int { length / PageSize.bytes }
    }

    struct PendingRelease {
        var length: Int
        var release: () -> Void
        var waitFor: UInt64
        var deadline: UInt64
    }

    /// How new chunks are advised for transparent huge pages.
    public var hugePageAdvice: HugePageAdvice
    /// Hold chunks in holder processes (the OOM killer's last resort).
    public var useHolders: Bool
    public private(set) var heldBytes: UInt64 = 0
    private(set) var chunks: [Chunk] = []
    private var pending: [PendingRelease] = []

    // Frame reporting.
    public private(set) var reportingFrames = false
    private var pagemap: Pagemap?
    private var seq: UInt64 = 0
    private var ackedSeq: UInt64 = 0
    private let clock: MonotonicClock
    /// Sends a FRAMES_* event to the host.
    var emit: (_ name: String, _ data: JSON) -> Void = { _, _ in }
    var warn: (_ message: String) -> Void = { _ in }
    /// Called each time memory goes back to the kernel during `shrink` (the
    /// daemon notes the first one of a pressure deflate).
    var returned: () -> Void = {}

    public init(hugePageAdvice: HugePageAdvice, useHolders: Bool = false, clock: MonotonicClock) {
        self.hugePageAdvice = hugePageAdvice
        self.useHolders = useHolders
        self.clock = clock
    }

    /// A forked holder waiting for its chunk, so growing never waits for a fork.
    private var spare: HolderProcess?

    /// Ends the spare holder (no growth expected soon, or holders turned off).
    public func dropSpareHolder() {
        spare?.release()
        spare = nil
    }

    /// Holder pids (chunk holders only), for tests and status.
    public var holderPIDs: [pid_t] {
        chunks.compactMap { if case let .holder(h) = $0.memory { h.pid } else { nil } }
    }

    /// Bytes still locked while waiting for the host (not part of `actual`).
    public var pendingBytes: UInt64 { pending.reduce(0) { $0 + UInt64($1.length) } }

    /// When the earliest pending release must happen regardless of the host.
    public var nextDeadline: UInt64? { pending.map(\.deadline).min() }

    public func grow(by bytes: UInt64) throws(ReserveError) {
        let memory: Memory
        do {
            if useHolders {
                let holder: HolderProcess
                if let ready = spare {
                    holder = ready
                } else {
                    holder = try HolderProcess()
                }
                spare = nil
                holder.startLock(length: Int(bytes), advice: hugePageAdvice)
                // While it locks (on another CPU), fork the next one.
                spare = try? HolderProcess()
                try holder.finishLock()
                memory = .holder(holder)
            } else {
                memory = .local(try LockedRegion(length: Int(bytes), advice: hugePageAdvice))
            }
        } catch {
            throw ReserveError(error.description)
        }
        let chunk = Chunk(memory)
        chunks.append(chunk)
        heldBytes += bytes
        if reportingFrames { reportInflated(chunk) }
    }

    public func shrink(by bytes: UInt64) {
        var remaining = min(bytes, heldBytes)
        while remaining > 0, let last = chunks.last {
            let length = UInt64(last.length)
            if length <= remaining {
                chunks.removeLast()
                heldBytes -= length
                remaining -= length
                let memory = last.memory
                release(length: Int(length), memory.release, frames: last.frames, reportedSeq: last.reportedSeq, holdUntil: last.holdUntil)
            } else {
                let keep = Int(length - remaining)
                let (head, tail) = Frames.split(last.frames, atPage: keep / PageSize.bytes)
                last.frames = head
                last.length = keep
                let (tailLength, releaseTail) = last.memory.splitTail(keeping: keep)
                release(length: tailLength, releaseTail, frames: tail, reportedSeq: last.reportedSeq, holdUntil: last.holdUntil)
                heldBytes -= remaining
                remaining = 0
            }
        }
        // An empty balloon keeps no spare holder around.
        if heldBytes == 0 { dropSpareHolder() }
    }

    /// Gives everything back at once, without waiting for anyone (shutdown).
    public func releaseAll() {
        dropSpareHolder()
        shrink(by: heldBytes)
        for p in pending { p.release() }
        pending.removeAll()
    }

    private func release(length: Int, _ action: @escaping () -> Void, frames: [FrameRun], reportedSeq: UInt64?, holdUntil: UInt64?) {
        guard reportingFrames, let reportedSeq, !frames.isEmpty else {
            if let holdUntil, holdUntil > clock.milliseconds {
                pending.append(PendingRelease(length: length, release: action, waitFor: .max, deadline: holdUntil))
            } else {
                action()
                returned()
            }
            return
        }
        let deflatedSeq = send("FRAMES_DEFLATED", frames)
        if reportedSeq <= ackedSeq {
            action()  // The host has nothing in flight for these frames.
            returned()
        } else {
            pending.append(PendingRelease(
                length: length, release: action, waitFor: deflatedSeq, deadline: clock.milliseconds + Self.releaseGraceMilliseconds))
        }
    }

    /// Finds holders that died on their own (the OOM killer's last resort):
    /// their memory is already back with the kernel. Returns the bytes lost.
    public func reapDeadHolders() -> UInt64 {
        var lost: UInt64 = 0
        chunks.removeAll { chunk in
            guard case let .holder(h) = chunk.memory else { return false }
            var status: Int32 = 0
            guard waitpid(h.pid, &status, WNOHANG) == h.pid else { return false }
            h.markReaped()
            lost += UInt64(chunk.length)
            if reportingFrames, chunk.reportedSeq != nil, !chunk.frames.isEmpty {
                _ = send("FRAMES_DEFLATED", chunk.frames)
            }
            return true
        }
        heldBytes -= lost
        // A spare the OOM killer took (or that died) is simply replaced later.
        if let s = spare {
            var status: Int32 = 0
            if waitpid(s.pid, &status, WNOHANG) == s.pid { s.markReaped(); spare = nil }
        }
        return lost
    }

    // MARK: - Frame reporting

    public enum FrameReportingError: Error, CustomStringConvertible {
        case unavailable(String)
        public var description: String {
            switch self { case let .unavailable(why): "frame reporting is unavailable: \(why)" }
        }
    }

    /// Switches reporting on and reads the frames held now; returns their
    /// number. `reportHeldFrames()` then sends them (after the reply).
    public func enableFrameReporting() throws(FrameReportingError) -> Int {
        if pagemap == nil {
            do { pagemap = try Pagemap() } catch { throw .unavailable("\(error)") }
        }
        // Probe before saying yes: without CAP_SYS_ADMIN frames are hidden.
        if let probe = chunks.first {
            do { _ = try Pagemap(path: probe.memory.pagemapPath).frames(at: probe.memory.address, pages: 1) } catch {
                throw .unavailable("\(error)")
            }
        } else {
            do {
                let scratch = try LockedRegion(length: PageSize.bytes, hugePages: false)
                defer { scratch.release() }
                _ = try pagemap!.frames(at: scratch.base, pages: 1)
            } catch let error as Pagemap.Failure {
                throw .unavailable(error.description)
            } catch {
                throw .unavailable("\(error)")
            }
        }
        reportingFrames = true
        return chunks.reduce(0) { $0 + $1.pages }
    }

    /// Reports every chunk held now (FRAMES_INFLATED, one event a chunk).
    public func reportHeldFrames() {
        for chunk in chunks where chunk.reportedSeq == nil { reportInflated(chunk) }
    }

    /// Reporting off (the host asked, or went away). A host may still have a
    /// free in flight for frames it never acknowledged (it may not even have
    /// read the report yet), so such memory keeps waiting out the grace time
    /// before it can be released; acknowledged memory is free to go.
    public func disableFrameReporting() {
        reportingFrames = false
        let holdUntil = clock.milliseconds + Self.releaseGraceMilliseconds
        for chunk in chunks {
            if let seq = chunk.reportedSeq, seq > ackedSeq { chunk.holdUntil = holdUntil }
            chunk.frames = []
            chunk.reportedSeq = nil
        }
    }

    /// The host finished acting on every FRAMES_* event up to `seq`.
    public func acknowledge(_ seq: UInt64) {
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
        let now = clock.milliseconds
        var released: UInt64 = 0
        pending.removeAll { p in
            guard p.deadline <= now else { return false }
            released += UInt64(p.length)
            p.release()
            return true
        }
        return released
    }

    /// Re-reads every chunk's frames; reports frames that moved. Returns the
    /// number of pages whose frame changed.
    public func rescanFrames() -> Int {
        guard reportingFrames else { return 0 }
        var moved = 0
        for chunk in chunks {
            guard let fresh = try? frames(of: chunk) else { continue }
            let (left, arrived) = Frames.moved(from: chunk.frames, to: fresh, pages: chunk.pages)
            guard !left.isEmpty || !arrived.isEmpty else { continue }
            moved += max(Frames.frameCount(left), Frames.frameCount(arrived))
            if !left.isEmpty { _ = send("FRAMES_DEFLATED", left) }
            chunk.frames = fresh
            if !arrived.isEmpty { chunk.reportedSeq = send("FRAMES_INFLATED", arrived) }
        }
        return moved
    }

    private func frames(of chunk: Chunk) throws -> [FrameRun] {
        let map: Pagemap
        switch chunk.memory {
        case .local:
            guard let pagemap else { throw Pagemap.Failure.framesHidden }
            map = pagemap
        case .holder:
            map = try Pagemap(path: chunk.memory.pagemapPath)
        }
        var runs: [FrameRun] = []
        try map.forEachRun(at: chunk.memory.address, pages: chunk.pages) { runs.append(FrameRun(pageOffset: $0, pfn: $1, count: $2)) }
        return runs
    }

    private func reportInflated(_ chunk: Chunk) {
        do {
            chunk.frames = try frames(of: chunk)
            chunk.reportedSeq = send("FRAMES_INFLATED", chunk.frames)
        } catch {
            warn("cannot read the frames of a \(chunk.length)-byte chunk: \(error)")
        }
    }

    /// Sends one FRAMES_* event; returns its sequence number.
    private func send(_ name: String, _ runs: [FrameRun]) -> UInt64 {
        seq += 1
        let ranges = Frames.ranges(runs).map(\.json)
        emit(name, ["seq": .uint(seq), "page-size": .uint(UInt64(PageSize.bytes)), "ranges": .array(ranges)])
        return seq
    }
}

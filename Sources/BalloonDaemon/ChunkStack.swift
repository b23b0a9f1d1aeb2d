// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonProtocol
import BalloonSystem

/// The balloon's memory: a stack of mlocked anonymous regions, one a chunk.
/// Deflation gives back the newest memory first, shrinking a region's tail
/// when the target falls inside it. Frame reporting's bookkeeping (what may
/// be released when) is the `FrameReporter`'s; this reads the frames.
public final class ChunkStack: MemoryReserver {
    /// How new chunks are advised for transparent huge pages.
    public var hugePageAdvice: HugePageAdvice
    /// Hold chunks in holder processes (the OOM killer's last resort).
    public var useHolders: Bool {
        didSet { if !useHolders { dropSpareHolders() } }
    }
    public private(set) var heldBytes: UInt64 = 0
    private(set) var chunks: [Chunk] = []
    public let reporter: FrameReporter
    private var pagemap: Pagemap?
    /// Holders waiting for a chunk, newest last: the one forked ahead so
    /// growing never waits for a fork, and those a deflate emptied (`retire`),
    /// kept for the growth that follows until `trimSpareHolders()`.
    private var spares: [HolderProcess] = []
    /// The most emptied holders kept: a deflate of half a GiB in the default
    /// 64 MiB chunks. Each is a process of about 1 MiB (docs/pressure.md).
    public static let spareLimit = 8
    /// Counts every holder a deflate kept or a growth took from the spares,
    /// so a timer can tell whether they were used since it was armed.
    public private(set) var spareActivity: UInt64 = 0
    var warn: (_ message: String) -> Void = { _ in }
    /// Called each time memory goes back to the kernel during `shrink` (the
    /// daemon notes the first one of a pressure deflate).
    var returned: () -> Void = {}
    /// The PSI triggers a holder's lock gives way to (the daemon's open ones):
    /// a guest that stalls while a chunk is locked gets the lock's memory
    /// back at once instead of after it (docs/pressure.md).
    var lockInterrupters: () -> [(descriptor: Descriptor, tier: PressureSignal.Tier)] = { [] }
    /// What else a holder's lock watches, given what the balloon would hold
    /// once it is done: the daemon's host channel, so a target the host
    /// lowers meanwhile ends the lock instead of waiting for it (a TCG
    /// guest locks 64 MiB in most of a second; docs/pressure.md).
    var lockWatch: (_ holdingWhenDone: UInt64) -> LockWatch? = { _ in nil }
    /// Triggers that fired while a chunk was locked. Waiting on a trigger
    /// takes its event, so epoll will not report these: the daemon answers
    /// them (`takeFiredDuringLock`).
    private var firedDuringLock: [PressureSignal.Tier] = []

    public init(hugePageAdvice: HugePageAdvice, useHolders: Bool = false, reporter: FrameReporter) {
        self.hugePageAdvice = hugePageAdvice
        self.useHolders = useHolders
        self.reporter = reporter
    }

    public var reportingFrames: Bool { reporter.enabled }

    /// Ends every spare holder (shutdown, or holders turned off).
    public func dropSpareHolders() {
        for holder in spares { holder.release() }
        spares.removeAll()
    }

    /// Spares beyond the one a balloon that holds memory keeps ready for its
    /// next growth (an empty balloon keeps none).
    public var excessSpareHolders: Int { max(0, spares.count - (heldBytes > 0 ? 1 : 0)) }

    /// Ends the excess spares, oldest first (`excessSpareHolders`).
    public func trimSpareHolders() {
        let excess = excessSpareHolders
        guard excess > 0 else { return }
        for holder in spares.prefix(excess) { holder.release() }
        spares.removeFirst(excess)
    }

    /// Spare holder pids (for tests and status).
    public var spareHolderPIDs: [Int32] { spares.map(\.pid) }

    /// Holder pids (chunk holders only), for tests and status.
    public var holderPIDs: [Int32] {
        chunks.compactMap { if case let .holder(h) = $0.memory { h.pid } else { nil } }
    }

    public func grow(by bytes: UInt64) throws(ReserveError) {
        let memory: ChunkMemory
        do throws(SystemError) {
            if useHolders {
                let holder: HolderProcess
                if let ready = spares.popLast() {
                    holder = ready
                    spareActivity &+= 1
                } else {
                    holder = try HolderProcess()
                }
                holder.startLock(length: Int(bytes), advice: hugePageAdvice)
                // While it locks (on another CPU), fork the next one unless one
                // waits already; if that fails, the next growth forks again and says why.
                if spares.isEmpty, let next = try? HolderProcess() { spares.append(next) }
                let interrupters = lockInterrupters()
                var fired: [Int] = []
                defer { firedDuringLock += fired.map { interrupters[$0].tier } }
                try holder.finishLock(interruptedBy: interrupters.map(\.descriptor), fired: &fired,
                                      watching: lockWatch(heldBytes + bytes))
                memory = .holder(holder)
            } else {
                memory = .local(try LockedRegion(length: Int(bytes), advice: hugePageAdvice))
            }
        } catch {
            throw ReserveError(error)
        }
        let chunk = Chunk(memory)
        chunks.append(chunk)
        heldBytes += bytes
        if reporter.enabled {
            reportInflated(chunk)
            updateLingers()
        }
    }

    /// The triggers that fired during chunk locks since the last call.
    func takeFiredDuringLock() -> [PressureSignal.Tier] {
        defer { firedDuringLock.removeAll() }
        return firedDuringLock
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
                if reporter.release(length, of: last.frames, { [weak self] in self?.retire(memory) ?? memory.release() }) { returned() }
            } else {
                let keep = Int(length - remaining)
                let (head, tail) = Frames.split(last.frames.runs, atPage: keep / PageSize.bytes)
                let leaving = ReportedFrames(runs: tail, reportedSeq: last.frames.reportedSeq, holdUntil: last.frames.holdUntil)
                last.frames.runs = head
                last.length = keep
                let (tailLength, releaseTail) = last.memory.splitTail(keeping: keep)
                if reporter.release(UInt64(tailLength), of: leaving, releaseTail) { returned() }
                heldBytes -= remaining
                remaining = 0
            }
        }
    }

    /// Gives a whole chunk back: a holder empties it and waits as a spare for
    /// the next growth, unless `spareLimit` spares wait already. During a
    /// burst a guest's balloond gives back chunk after chunk while the burst
    /// needs the CPU; a holder's exit there cost about a third of balloond's
    /// side of a deflate, and the regrowth after it forked them all again
    /// (bench/results-host-deflate-holders-1e438a5.md).
    private func retire(_ memory: ChunkMemory) {
        guard case let .holder(holder) = memory, useHolders, spares.count < Self.spareLimit, holder.empty() else {
            memory.release()
            return
        }
        spares.append(holder)
        spareActivity &+= 1
    }

    /// Gives everything back at once, without waiting for anyone (shutdown).
    public func releaseAll() {
        shrink(by: heldBytes)
        reporter.releaseAll()
        dropSpareHolders()  // after the releases, which keep emptied holders as spares
    }

    /// Finds holders that died on their own (the OOM killer's last resort):
    /// their memory is already back with the kernel. Returns the bytes lost.
    public func reapDeadHolders() -> UInt64 {
        var lost: UInt64 = 0
        chunks.removeAll { chunk in
            guard case let .holder(h) = chunk.memory, reaped(h) else { return false }
            lost += UInt64(chunk.length)
            reporter.lost(chunk.frames)
            return true
        }
        heldBytes -= lost
        // A spare the OOM killer took (or that died) is simply replaced later.
        spares.removeAll { reaped($0) }
        return lost
    }

    private func reaped(_ holder: HolderProcess) -> Bool {
        // A holder that died before it could answer a shrink was ended and
        // reaped there (HolderProcess.shrink), and its chunk stayed: the
        // memory is gone all the same. waitpid would only say ECHILD.
        if holder.hasEnded { return true }
        do {
            guard try ProcessControl.reapIfExited(holder.pid) else { return false }
        } catch {
            warn("cannot check balloon holder \(holder.pid): \(error)")
            return false
        }
        holder.markReaped()
        return true
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
        reporter.enable()
        return chunks.reduce(0) { $0 + $1.pages }
    }

    /// Reports every chunk held now (FRAMES_INFLATED, one event a chunk).
    public func reportHeldFrames() {
        for chunk in chunks where chunk.frames.reportedSeq == nil { reportInflated(chunk) }
        updateLingers()
    }

    public func disableFrameReporting() {
        reporter.disable(chunks.map(\.frames))
        updateLingers()
    }

    /// The host finished acting on every FRAMES_* event up to `seq`.
    public func acknowledge(_ seq: UInt64) {
        reporter.acknowledge(seq, chunks: chunks.map(\.frames))
        updateLingers()
    }

    /// Tells each holder whether to outlive the daemon: one whose frames a
    /// host may still free keeps them locked for the grace time after the
    /// daemon dies (a host on virtio-serial can read a dead daemon's report
    /// late; it frees only within the grace time of a sign of life). A
    /// holder already leaving the balloon (waiting for a deflate ack) keeps
    /// what it was told. A grace time that has passed is noticed at the next
    /// report or ack: until then the holder lingers, the safe side.
    func updateLingers() {
        for chunk in chunks {
            guard case let .holder(h) = chunk.memory else { continue }
            h.setLinger(reporter.mayBeFreedByHost(chunk.frames) ? reporter.grace : .zero)
        }
    }

    /// Re-reads every chunk's frames; reports frames that moved. Returns the
    /// number of pages whose frame changed.
    public func rescanFrames() -> Int {
        guard reporter.enabled else { return 0 }
        var moved = 0
        for chunk in chunks {
            let fresh: [FrameRun]
            do { fresh = try frames(of: chunk) } catch {
                warn("cannot re-read the frames of a \(chunk.length)-byte chunk: \(error)")
                continue
            }
            moved += reporter.rescanned(chunk.frames, fresh: fresh, pages: chunk.pages)
        }
        updateLingers()
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
            reporter.reportInflated(chunk.frames, runs: try frames(of: chunk))
        } catch {
            warn("cannot read the frames of a \(chunk.length)-byte chunk: \(error)")
        }
    }
}

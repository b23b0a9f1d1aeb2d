// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonController
import BalloonProtocol
import BalloonSystem
import Logging

/// Frame reporting's one timer: it serves both the earliest grace deadline
/// of memory waiting for the host's acknowledgement and the next periodic
/// rescan of the balloon's frames (`FrameRescanInterval=`).
final class FrameTimers {
    static let token: UInt64 = 120

    private let timer: TimerDescriptor
    private let chunks: ChunkStack
    private let clock: MonotonicClock
    var logger: Logger
    /// `.zero`: rescans only on request.
    var rescanInterval: Duration
    private var armedFor: Duration?
    private var nextRescanAt: Duration?
    private var gate = RescanGate()
    /// The kernel's count of pages it moved or replaced (`RescanGate`); nil
    /// when unknown.
    var movedPages: () -> UInt64? = { nil }

    init(registry: EventRegistry, chunks: ChunkStack, clock: MonotonicClock, logger: Logger, rescanInterval: Duration) throws(SystemError) {
        timer = try TimerDescriptor()
        self.chunks = chunks
        self.clock = clock
        self.logger = logger
        self.rescanInterval = rescanInterval
        try registry.add(timer.descriptor, events: .readable, token: Self.token)
    }

    /// Reporting started: the first periodic rescan is one interval away.
    func reportingStarted() {
        nextRescanAt = rescanInterval > .zero ? clock.now + rescanInterval : nil
        gate.framesRead(moved: movedPages())
    }

    /// Reporting off (the host asked, went away, or was replaced).
    func stopReporting(because why: String) {
        guard chunks.reportingFrames else { return }
        chunks.disableFrameReporting()
        nextRescanAt = nil
        let waiting = chunks.reporter.pendingBytes
        logger.info("frame reporting off: \(why)", metadata: waiting > 0 ? ["held-until-grace-ends": "\(HumanBytes.format(waiting))"] : [:])
    }

    func fired() {
        _ = timer.acknowledge()
        armedFor = nil
        let now = clock.now
        let expired = chunks.reporter.releaseExpired()
        if expired > 0 {
            logger.warning("the host did not acknowledge a deflate within \(chunks.reporter.grace.inMilliseconds) ms; released \(HumanBytes.format(expired)) anyway")
        }
        if let at = nextRescanAt, at <= now, chunks.reportingFrames {
            // Read before the scan: a page moved during it makes the next one run.
            let count = movedPages()
            if gate.worthRescanning(moved: count) {
                let moved = chunks.rescanFrames()
                if moved > 0 { logger.info("rescan: \(moved) balloon pages moved to other frames; reported") }
            }
            gate.framesRead(moved: count)
            nextRescanAt = now + rescanInterval
        }
    }

    /// Arms the timer for whichever comes first.
    func rearm() {
        let wanted = [chunks.reporter.nextDeadline, chunks.reportingFrames ? nextRescanAt : nil].compactMap { $0 }.min()
        guard wanted != armedFor else { return }
        do {
            if let wanted {
                let now = clock.now
                try timer.arm(after: max(.milliseconds(1), wanted - now))
            } else {
                try timer.disarm()
            }
            armedFor = wanted
        } catch {
            // Tried again next loop turn (the wanted time still differs).
            logger.error("cannot set the frame reporting timer: \(error)")
        }
    }
}

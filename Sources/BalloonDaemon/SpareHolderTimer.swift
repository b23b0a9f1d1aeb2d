// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonSystem
import Logging

/// Ends the spare holders a deflate left behind (`ChunkStack.retire` keeps
/// emptied holders for the growth that follows) once they have gone unused
/// for `keep`: the balloon regrows within seconds of a burst, in its quiet
/// period's regrowth or at the host's next target, and a holder reused then
/// is an exit and a fork the guest does not pay for in a burst or after it.
final class SpareHolderTimer {
    static let token: UInt64 = 121
    /// Longer than the first quiet period (15 s), after which a guest whose
    /// burst ended regrows; short enough that a balloon left small does not
    /// keep a handful of idle processes for long.
    static let defaultKeep: Duration = .seconds(30)

    let keep: Duration
    private let timer: TimerDescriptor
    private let chunks: ChunkStack
    var logger: Logger
    /// `ChunkStack.spareActivity` when the timer was armed; nil while disarmed.
    private var armedAt: UInt64?

    init(registry: EventRegistry, chunks: ChunkStack, logger: Logger, keep: Duration = defaultKeep) throws(SystemError) {
        timer = try TimerDescriptor()
        self.keep = keep
        self.chunks = chunks
        self.logger = logger
        try registry.add(timer.descriptor, events: .readable, token: Self.token)
    }

    func fired() {
        _ = timer.acknowledge()
        armedAt = nil
        chunks.trimSpareHolders()
    }

    /// Each loop turn: `keep` after the spares were last used or added to,
    /// while there are more than the balloon keeps anyway.
    func rearm() {
        let wanted = chunks.excessSpareHolders > 0 ? chunks.spareActivity : nil
        guard wanted != armedAt else { return }
        do {
            if wanted != nil { try timer.arm(after: keep) } else { try timer.disarm() }
            armedAt = wanted
        } catch {
            // Tried again next loop turn (still not armed for this activity).
            logger.error("cannot set the spare holders' timer: \(error)")
        }
    }
}

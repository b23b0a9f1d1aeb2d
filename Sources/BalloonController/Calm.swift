// SPDX-License-Identifier: Apache-2.0

/// Ending a pressure backoff early once the guest is calm (docs/pressure.md,
/// "Calm"; `[Pressure] CalmPeriod=`).
///
/// The quiet period (60 s) keeps the host's target from taking memory the
/// guest may need again while a workload that stalled may still be running:
/// every signal restarts it. But signals are thresholds (the light trigger is
/// a 4% stall), and a workload that ended leaves the guest idle with its page
/// cache, which the quiet period then keeps from the host for a full minute
/// after the last signal. A guest that has not stalled at all (PSI memory
/// `some` total rising by at most `calmStallShare` of the time) for
/// `calmPeriod` is past it: the backoff ends there, and the balloon grows
/// toward the host's target again, chunk by chunk, stopping at the first new
/// signal as after any backoff. Growth into page cache makes the kernel
/// reclaim cache nobody has touched for that long; if it is wanted after all,
/// refaults stall the guest and the balloon gives it back.
struct CalmWatch: Sendable {
    /// When the last signal came: calm is counted from no earlier than this.
    var signalAt: Duration?
    /// The last sample of PSI memory `some` total (µs) and when it was read.
    var lastTotal: UInt64?
    var lastAt: Duration?
    /// The end of the last sample interval that stalled (or the first sample).
    var stallAt: Duration?
}

extension BalloonController {
    /// Whether the daemon should read PSI `some` total for `sampleCalm`: during
    /// a backoff, with `calmPeriod` on.
    public var wantsCalmSamples: Bool {
        policy.calmPeriod > .zero && inPressureBackoff
    }

    /// Feeds PSI memory `some` total (microseconds since boot). Ends the
    /// backoff once no interval has stalled for `calmPeriod` since the last
    /// signal; true when it did (the balloon may grow).
    @discardableResult
    public func sampleCalm(psiSomeTotal total: UInt64) -> Bool {
        let now = clock.now
        liftExpiredBackoff(now)
        defer {
            calm.lastTotal = total
            calm.lastAt = now
        }
        guard policy.calmPeriod > .zero, inPressureBackoff else { return false }
        if let lastTotal = calm.lastTotal, let lastAt = calm.lastAt, total >= lastTotal, now > lastAt {
            let elapsedMicroseconds = (now - lastAt) / .microseconds(1)
            if Double(total - lastTotal) > elapsedMicroseconds * policy.calmStallShare { calm.stallAt = now }
        } else {
            // The first sample since the signal, or the counter went back.
            calm.stallAt = now
        }
        let since = max(calm.stallAt ?? now, calm.signalAt ?? now)
        guard now - since >= policy.calmPeriod else { return false }
        quietUntil = now
        liftExpiredBackoff(now)
        wake()
        return true
    }
}

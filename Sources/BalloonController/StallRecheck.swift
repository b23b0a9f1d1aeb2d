// SPDX-License-Identifier: Apache-2.0

/// A PSI trigger as the controller weighs a stall against it: `stall` of
/// `window` stalled (`some`, or `full` when set) fires it.
public struct TriggerShape: Sendable, Equatable {
    public var full: Bool
    public var stall: Duration
    public var window: Duration

    public init(full: Bool, stall: Duration, window: Duration) {
        self.full = full
        self.stall = stall
        self.window = window
    }

    /// The share of time stalled that fires the trigger.
    var share: Double { window > .zero ? stall / window : 1 }
}

/// A PSI signal blamed on the balloon's own growth, waiting for its stall to
/// be measured again.
public struct BlamedStall: Sendable, Equatable {
    public var tier: PressureSignal.Tier
    public var at: Duration
}

/// Stall time measured over a span (from /proc/pressure/memory's totals).
public struct StallMeasure: Sendable, Equatable {
    public var some: Duration
    /// Nil when the kernel has no `full` line.
    public var full: Duration?
    public var over: Duration

    public init(some: Duration, full: Duration?, over: Duration) {
        self.some = some
        self.full = full
        self.over = over
    }
}

extension BalloonController {
    /// When the stall behind a blamed PSI signal is to be measured again;
    /// nil when none waits.
    public var stallRecheckDue: Duration? {
        blamedStall.map { $0.at + policy.stallRecheckDelay }
    }

    /// A PSI signal that came right after growth was blamed on it: the lock's
    /// own faulting and reclaim stall the guest too. The daemon handles a
    /// signal only after the lock in progress ends, so a stall of the
    /// guest's own that began during the lock looks the same. Measured again
    /// with the balloon paused, the growth's stall is over and the guest's
    /// goes on: when the stall since the blamed signal reaches an open
    /// trigger's share, it is answered as that trigger's signal (the highest
    /// tier reached), now rather than at the trigger's next firing, at
    /// least one window later. Returns the signal and the bytes given back,
    /// or nil (nothing waited, the balloon grew since, or the stall ended).
    public func recheckBlamedStall(_ measure: StallMeasure) -> (signal: PressureSignal, given: UInt64)? {
        guard let blamed = blamedStall else { return nil }
        blamedStall = nil
        guard measure.over > .zero, lastGrowthAt.map({ $0 <= blamed.at }) ?? true else { return nil }
        for tier in [PressureSignal.Tier.severe, .heavy, .light] {
            guard let shape = policy.triggers[tier], let stalled = shape.full ? measure.full : measure.some else { continue }
            if stalled / measure.over >= shape.share {
                let signal = PressureSignal.psi(tier)
                return (signal, pressure(signal, outlastedGrowth: true))
            }
        }
        return nil
    }
}

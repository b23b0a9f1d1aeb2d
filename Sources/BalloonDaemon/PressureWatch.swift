// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonConfig
import BalloonController
import BalloonProtocol
import BalloonSystem
import Glibc
import Logging

/// Watches for the guest needing memory back and yields `PressureSignal`s:
/// the PSI triggers (with their 2 s fallback), and while the balloon holds
/// memory a timer that checks MemAvailable against the floor and
/// /proc/vmstat for direct reclaim and OOM kills (docs/pressure.md). Also
/// keeps the daemon itself from the OOM killer when holders carry the memory.
final class PressureWatch {
    enum Token: UInt64 {
        case lightTrigger = 100, heavyTrigger, severeTrigger
        case floorTimer = 110
        case recheckTimer
    }

    struct ActiveTrigger {
        var trigger: PressureTrigger
        var requested: String
        var active: String
        var fallback: Bool
    }

    private let registry: EventRegistry
    var logger: Logger
    private let sampler: MemorySampler
    private unowned let controller: BalloonController
    private let floorTimer: TimerDescriptor
    private var floorTimerInterval: Duration?
    private var reclaimBaseline: ReclaimCounters?
    /// Watch /proc/vmstat's reclaim counters (`ReclaimSignals=`).
    var reclaimSignals: Bool
    private(set) var triggers: [PressureSignal.Tier: ActiveTrigger] = [:]
    private(set) var protectedFromOOM = false
    /// Each signal as it is seen.
    var onSignal: (PressureSignal) -> Void = { _ in }
    /// The stall since a signal blamed on growth, measured again.
    var onRecheck: (StallMeasure) -> Void = { _ in }
    private let recheckTimer: TimerDescriptor
    /// The blamed signal waiting for its recheck, with when it came and the
    /// stall totals (µs) then.
    private var recheck: (blamed: BlamedStall, at: Duration, some: UInt64, full: UInt64?)?

    init(registry: EventRegistry, logger: Logger, sampler: MemorySampler, controller: BalloonController, reclaimSignals: Bool) throws(SystemError) {
        self.registry = registry
        self.logger = logger
        self.sampler = sampler
        self.controller = controller
        self.reclaimSignals = reclaimSignals
        floorTimer = try TimerDescriptor()
        try registry.add(floorTimer.descriptor, events: .readable, token: Token.floorTimer.rawValue)
        recheckTimer = try TimerDescriptor()
        try registry.add(recheckTimer.descriptor, events: .readable, token: Token.recheckTimer.rawValue)
    }

    /// Handles a descriptor of the watch that is ready; false for other tokens.
    func handle(token: UInt64) -> Bool {
        switch Token(rawValue: token) {
        case .lightTrigger: triggerFired(.light)
        case .heavyTrigger: triggerFired(.heavy)
        case .severeTrigger: triggerFired(.severe)
        case .floorTimer:
            _ = floorTimer.acknowledge()
            checkFloorAndReclaim()
        case .recheckTimer:
            _ = recheckTimer.acknowledge()
            recheckStall()
        case nil: return false
        }
        return true
    }

    private func triggerFired(_ tier: PressureSignal.Tier) {
        logger.debug("PSI \(tier.rawValue) trigger fired")
        onSignal(.psi(tier))
    }

    // MARK: - Stalls blamed on growth

    /// After each signal: one the controller blamed on growth is measured
    /// again `stallRecheckDelay` later (StallRecheck.swift).
    func scheduleRecheck() {
        guard let blamed = controller.blamedStall else {
            recheck = nil
            return
        }
        guard blamed != recheck?.blamed else { return }
        guard let totals = sampler.readPressure(), let some = totals.some?.total else {
            recheck = nil
            return
        }
        do {
            try recheckTimer.arm(after: max(.milliseconds(1), controller.policy.stallRecheckDelay))
            recheck = (blamed, SystemClock.monotonic(), some, totals.full?.total)
        } catch {
            // The trigger's next firing answers a stall that goes on.
            logger.error("cannot set the stall recheck timer: \(error)")
            recheck = nil
        }
    }

    private func recheckStall() {
        guard let r = recheck, r.blamed == controller.blamedStall else { return }
        recheck = nil
        let totals = sampler.readPressure()
        func since(_ then: UInt64?, _ now: UInt64?) -> Duration? {
            guard let then, let now, now >= then else { return nil }
            return .microseconds(now - then)
        }
        let measure = StallMeasure(
            some: since(r.some, totals?.some?.total) ?? .zero, full: since(r.full, totals?.full?.total),
            over: SystemClock.monotonic() - r.at)
        logger.debug("stall since the signal blamed on growth", metadata: [
            "some-ms": "\(measure.some.inMilliseconds)", "full-ms": "\(measure.full.map { "\($0.inMilliseconds)" } ?? "-")",
            "over-ms": "\(measure.over.inMilliseconds)",
        ])
        onRecheck(measure)
    }

    // MARK: - PSI triggers

    /// Opens the configured PSI triggers. Without CAP_SYS_RESOURCE the kernel
    /// takes only windows that are multiples of 2 s: such a trigger falls
    /// back to a 2 s window with the same stall share, said once in the log
    /// and in `info`.
    func openTriggers(_ config: BalloondConfig) {
        guard sampler.hasPressure else {
            logger.warning("no /proc/pressure/memory (kernel without PSI): pressure is watched through MemAvailable and /proc/vmstat only")
            return
        }
        let tiers: [(PressureSignal.Tier, PSITriggerSpec?, Token)] = [
            (.light, config.lightTrigger, .lightTrigger), (.heavy, config.heavyTrigger, .heavyTrigger),
            (.severe, config.severeTrigger, .severeTrigger),
        ]
        var fellBack: [String] = []
        for (tier, spec, token) in tiers {
            guard let spec else { continue }
            let kind: PressureTrigger.Kind = spec.kind == .some ? .some : .full
            let stall = spec.stall, window = spec.window
            var active: PressureTrigger?
            var fallback = false
            do {
                active = try PressureTrigger(kind: kind, stall: stall, window: window)
            } catch where error.errno == .invalidArgument && window.inMicroseconds % PressureTrigger.unprivilegedWindowGranularity.inMicroseconds != 0 {
                let twoSeconds = PressureTrigger.unprivilegedWindowGranularity
                do {
                    // The same stall share of a 2 s window.
                    let share = stall.inMicroseconds * twoSeconds.inMicroseconds / max(1, window.inMicroseconds)
                    active = try PressureTrigger(kind: kind, stall: .microseconds(share), window: twoSeconds)
                    fallback = true
                    fellBack.append("\(tier.rawValue) \(spec)")
                } catch {
                    logger.error("cannot set the \(tier.rawValue) PSI trigger \"\(spec)\", nor its 2 s fallback: \(error)")
                }
            } catch {
                logger.error("cannot set the \(tier.rawValue) PSI trigger \"\(spec)\": \(error)")
            }
            guard let active else { continue }
            do {
                try registry.add(active.descriptor, events: .priority, token: token.rawValue)
                let shown = "\(active.kind.rawValue) \(active.stall.inMilliseconds)ms \(active.window.inMilliseconds)ms"
                triggers[tier] = ActiveTrigger(trigger: active, requested: spec.description, active: shown, fallback: fallback)
            } catch {
                logger.error("cannot watch the \(tier.rawValue) PSI trigger: \(error)")
            }
        }
        controller.policy.triggers = shapes
        if !fellBack.isEmpty {
            logger.warning("PSI triggers with windows that are not multiples of 2 s need CAP_SYS_RESOURCE; using 2 s windows with the same stall share for: \(fellBack.joined(separator: ", "))")
        }
    }

    /// The open triggers' descriptors, severest first (a chunk lock gives way to them).
    var triggerDescriptors: [(descriptor: Descriptor, tier: PressureSignal.Tier)] {
        PressureSignal.Tier.allCases.reversed().compactMap { tier in triggers[tier].map { ($0.trigger.descriptor, tier) } }
    }

    /// A trigger that fired while a chunk was locked (its event was taken there).
    func firedDuringLock(_ tier: PressureSignal.Tier) {
        logger.info("PSI \(tier.rawValue) trigger fired during a chunk lock (one still in progress was ended)")
        onSignal(.psi(tier))
    }

    /// The open triggers, as the kernel took them (a fallback's 2 s window).
    var shapes: [PressureSignal.Tier: TriggerShape] {
        triggers.mapValues { TriggerShape(full: $0.trigger.kind == .full, stall: $0.trigger.stall, window: $0.trigger.window) }
    }

    func closeTriggers() {
        for (_, t) in triggers {
            registry.remove(t.trigger.descriptor)
            t.trigger.descriptor.close()
        }
        triggers.removeAll()
    }

    /// As `info` shows them.
    var triggerInfo: [InfoReply.Trigger] {
        PressureSignal.Tier.allCases.compactMap { tier in
            triggers[tier].map { t in
                InfoReply.Trigger(tier: tier, requested: t.requested, active: t.active, twoSecondFallback: t.fallback)
            }
        }
    }

    // MARK: - OOM killer

    /// The OOM killer must take holders, never the daemon (which would lose
    /// every chunk's bookkeeping): oom_score_adj=-1000 (CAP_SYS_RESOURCE).
    func protectFromOOMKiller() {
        guard !protectedFromOOM else { return }
        do {
            let fd = try Descriptor.open("/proc/self/oom_score_adj", flags: O_WRONLY)
            defer { fd.close() }
            try fd.writeAll(Array("-1000".utf8))
            protectedFromOOM = true
        } catch {
            logger.warning("cannot protect balloond from the OOM killer (oom_score_adj=-1000 needs CAP_SYS_RESOURCE or OOMScoreAdjust= in the unit): \(error)")
        }
    }

    // MARK: - Floor and /proc/vmstat

    /// The timer runs only while the balloon holds memory, faster near the floor.
    func rearmFloorTimer() {
        let interval = controller.floorCheckInterval(available: controller.actual > 0 ? sampler.lastAvailable.map { $0 + controller.freeMemoryHeld } : nil)
        guard interval != floorTimerInterval else { return }
        if floorTimerInterval == nil {
            // Starting: counters that rose while the balloon was empty are not news.
            reclaimBaseline = readReclaimCounters()
        }
        do {
            if let interval {
                try floorTimer.arm(every: max(.milliseconds(1), interval))  // With the free-memory samples: one wakeup.
            } else {
                try floorTimer.disarm()
            }
            floorTimerInterval = interval
        } catch {
            // Tried again next loop turn (the interval still differs).
            logger.error("cannot set the floor check timer: \(error)")
        }
    }

    private func readReclaimCounters() -> ReclaimCounters? {
        guard reclaimSignals else { return nil }
        return sampler.reclaimCounters()
    }

    private func checkFloorAndReclaim() {
        guard controller.actual > 0 else { return }
        // Free memory the mode holds comes back at once: it counts as available.
        if let available = sampler.availableBytes().map({ $0 + controller.freeMemoryHeld }), available < controller.limits.availableFloor {
            onSignal(.belowFloor(available: available))
        }
        guard let now = readReclaimCounters() else { return }
        defer { reclaimBaseline = now }
        guard let before = reclaimBaseline, controller.actual > 0 else { return }
        if now.oomKills > before.oomKills {
            logger.warning("the kernel's OOM killer killed a process: deflating everything")
            onSignal(.oomKill)
        } else if now.allocStalls > before.allocStalls || now.directScans > before.directScans {
            onSignal(.directReclaim)
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonConfig
import BalloonController
import BalloonProtocol
import BalloonStats
import BalloonSystem
import Logging

/// The free-memory mode's timers (docs/free-memory.md): while the mode is
/// on, and during a pressure backoff that may regrow into free memory
/// (docs/pressure.md), MemFree is sampled every `sampleInterval` for the
/// controller's sizing rules; with `ReclaimColdCache=yes` (the mode) or
/// `RegrowColdCache=yes` (a backoff's regrowth), cold page cache is reclaimed
/// through cgroup v2 `memory.reclaim` a step at a time under the
/// `ColdCacheGovernor`.
final class FreeMemoryWatch {
    enum Token: UInt64 { case sample = 130, coldCache }
    /// Fast enough that a burst eats into the cushion, not into the kernel's
    /// watermarks, before the balloon gives memory back; one sysinfo(2) call
    /// a time.
    static let sampleInterval: Duration = .milliseconds(250)
    /// The cushion `auto` adds to the kernel's high watermarks.
    static let autoCushionMargin: UInt64 = 64 << 20

    private let sampler: MemorySampler
    private unowned let controller: BalloonController
    private let clock: MonotonicClock
    var logger: Logger
    private let sampleTimer: TimerDescriptor
    private let coldTimer: TimerDescriptor
    private(set) var config: BalloondConfig
    private var governor: ColdCacheGovernor?
    private var reclaimer: CgroupReclaim?
    /// Why cold-cache reclaim cannot run here (said once in the log).
    private(set) var coldCacheUnavailable: String?
    /// Bytes `memory.reclaim` took for the free-memory mode since the daemon
    /// started (a short reclaim, EAGAIN, is not counted: the kernel does not
    /// say how much).
    private(set) var coldCacheReclaimed: UInt64 = 0
    /// Bytes it took for regrowth alone since the daemon started (`query`'s
    /// `pressure.regrowth-reclaimed-total`).
    private(set) var regrowthReclaimedTotal: UInt64 = 0
    /// What the current backoff's regrowth took (logged when it ends).
    private var regrowthReclaimed: UInt64 = 0
    /// The balloon must move: the loop steps the controller.
    var onChange: () -> Void = {}
    /// Whether the sample timer is armed.
    private var sampling = false

    init(registry: EventRegistry, sampler: MemorySampler, controller: BalloonController, clock: MonotonicClock, logger: Logger, config: BalloondConfig) throws(SystemError) {
        self.sampler = sampler
        self.controller = controller
        self.clock = clock
        self.logger = logger
        self.config = config
        sampleTimer = try TimerDescriptor()
        coldTimer = try TimerDescriptor()
        try registry.add(sampleTimer.descriptor, events: .readable, token: Token.sample.rawValue)
        try registry.add(coldTimer.descriptor, events: .readable, token: Token.coldCache.rawValue)
        controller.regrowthPolicy = regrowthPolicy
    }

    /// `[Pressure] RegrowFreeMemory=`: the mode's sizing, applied to the
    /// host's part during a pressure backoff; nil when switched off.
    var regrowthPolicy: FreeMemoryPolicy? { config.regrowFreeMemory ? policy : nil }

    /// Samples while the mode or a backoff's regrowth needs them, not
    /// otherwise (no wake-ups for nothing). After every pressure signal, and
    /// whenever the mode goes on or off.
    func syncSampling() {
        let wanted = enabled || controller.wantsRegrowthSamples
        do { try setSampling(wanted) } catch {
            // Without samples the mode and regrowth do not grow: safe.
            logger.error("cannot \(wanted ? "set" : "stop") the MemFree sample timer: \(error)")
        }
        syncColdCache()
    }

    private func setSampling(_ wanted: Bool) throws(SystemError) {
        guard wanted != sampling else { return }
        if wanted {
            try sampleTimer.arm(every: Self.sampleInterval)  // On the grid the floor check shares (arm(every:)).
        } else {
            try sampleTimer.disarm()
        }
        sampling = wanted
    }

    var enabled: Bool { controller.freeMemory != nil }

    /// `Cushion=`, or auto: the sum of the zones' high watermarks (below
    /// which kswapd would run) plus 64 MiB, so the allocations of one sample
    /// interval are served from the cushion without waking kswapd.
    var cushion: UInt64 {
        if let bytes = config.freeMemoryCushion { return bytes }
        let pages = (try? readWholeFile("/proc/zoneinfo")).map(Self.highWatermarkPages) ?? 0
        return pages * sampler.pageSize + Self.autoCushionMargin
    }

    /// The sum of every zone's `high` watermark in /proc/zoneinfo, in pages.
    static func highWatermarkPages(_ zoneinfo: [UInt8]) -> UInt64 {
        var total: UInt64 = 0
        for line in String(decoding: zoneinfo, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count == 2, fields[0] == "high", let pages = UInt64(fields[1]) { total += pages }
        }
        return total
    }

    var policy: FreeMemoryPolicy { FreeMemoryPolicy(cushion: cushion, settleDelay: config.freeMemorySettleDelay) }

    /// The host's `set-free-memory-reporting {"enabled":true}`.
    func enable() throws(SystemError) -> FreeMemoryPolicy {
        let policy = self.policy
        controller.enableFreeMemory(policy)
        try setSampling(true)
        stopColdCache()  // A backoff's governor gives way to the mode's.
        startColdCache()
        logger.info("free-memory mode on", metadata: [
            "cushion": "\(HumanBytes.format(policy.cushion))", "cold-cache": "\(modeReclaims && governor != nil ? "on" : "off")",
        ])
        onChange()
        return policy
    }

    /// Off: the host asked, frame reporting stopped or the host went away.
    func disable(because why: String) {
        guard enabled else { return }
        controller.disableFreeMemory()
        stopColdCache()
        syncSampling()
        logger.info("free-memory mode off: \(why)")
        onChange()
    }

    /// A configuration reload: new settings apply at once.
    func reload(_ config: BalloondConfig) {
        self.config = config
        controller.regrowthPolicy = regrowthPolicy
        stopColdCache()
        guard enabled else { return syncColdCache() }
        if !config.freeMemoryAllow { return disable(because: "Allow=no after reload") }
        controller.enableFreeMemory(policy)
        startColdCache()
    }

    func handle(token: UInt64) -> Bool {
        switch Token(rawValue: token) {
        case .sample:
            _ = sampleTimer.acknowledge()
            let regrowth = controller.wantsRegrowthSamples
            if (enabled || regrowth), let free = sampler.memFree() {
                if enabled, controller.sampleFreeMemory(memFree: free) { onChange() }
                if regrowth, controller.sampleRegrowth(memFree: free) { onChange() }
            }
            syncSampling()
        case .coldCache:
            _ = coldTimer.acknowledge()
            coldCacheStep()
        case nil: return false
        }
        return true
    }

    // MARK: - Cold page cache

    /// The mode's reclaim (`ReclaimColdCache=yes`): every step the governor allows.
    private var modeReclaims: Bool { enabled && config.reclaimColdCache }
    /// A backoff's regrowth (`RegrowColdCache=yes`): only what regrowth can take.
    private var regrowthReclaims: Bool { config.regrowColdCache && controller.wantsRegrowthSamples }
    private var coldCacheWanted: Bool { modeReclaims || regrowthReclaims }
    /// The regrowth's governor steps more often than the mode's and waits at
    /// most a few seconds after a sign: a quiet period lasts 15-30 s, and a
    /// workload that stalled and ended must not leave it asleep for minutes.
    static let regrowthColdCacheInterval: Duration = .seconds(1)
    static let regrowthColdCacheMaxBackoff: Duration = .seconds(8)

    /// Starts or stops the governor as the mode and the backoffs come and go.
    private func syncColdCache() {
        if coldCacheWanted {
            if governor == nil { startColdCache() }
        } else if governor != nil {
            stopColdCache()
        }
    }

    private func startColdCache() {
        guard coldCacheWanted, coldCacheUnavailable == nil else { return }
        if reclaimer == nil {
            do { reclaimer = try CgroupReclaim() } catch {
                let why = error.errno == .noSuchFileOrDirectory
                    ? "no \(CgroupReclaim.rootPath) (cgroup v2 with memory.reclaim, Linux 5.19 or later)" : "\(error)"
                coldCacheUnavailable = why
                logger.warning("cold page cache reclaim is off: \(why); the free-memory mode and regrowth still take free memory")
                return
            }
        }
        var policy = ColdCacheGovernor.Policy()
        policy.step = config.coldCacheStep
        if !modeReclaims {
            policy.interval = Self.regrowthColdCacheInterval
            policy.maxBackoff = Self.regrowthColdCacheMaxBackoff
            policy.activeIsCold = true
        }
        governor = ColdCacheGovernor(policy: policy)
        coldCacheStep()  // Takes the baselines.
    }

    private func stopColdCache() {
        try? coldTimer.disarm()
        governor = nil
        if regrowthReclaimed > 0 {
            logger.info("regrowth reclaimed cold page cache", metadata: ["bytes": "\(regrowthReclaimed)"])
            regrowthReclaimed = 0
        }
    }

    private func coldCacheStep() {
        guard coldCacheWanted else { return stopColdCache() }
        guard var governor, let reclaimer else { return }
        // A few values every step: read by key, not as dictionaries of every
        // key, and both file lists from one read of /proc/meminfo.
        let files = sampler.meminfoValues(governor.policy.activeIsCold ? ["Inactive(file)", "Active(file)"] : ["Inactive(file)"])
        let sample = ColdCacheGovernor.Sample(
            someStall: sampler.readPressure()?.some.map { .microseconds(Int64(clamping: $0.total)) },
            refaults: sampler.fileRefaults() ?? 0,
            inactiveFile: files[0] ?? 0,
            activeFile: files.count > 1 ? files[1] ?? 0 : 0)
        var next = governor.policy.interval
        switch governor.decide(sample, now: clock.now) {
        case var .reclaim(bytes):
            // For regrowth alone, no more than it can take: cache freed past
            // that would only sit free in the guest.
            if !modeReclaims {
                let room = sampler.memFree().map(controller.regrowthColdCacheRoom) ?? 0
                guard room > 0 else {
                    logger.debug("cold page cache for regrowth: no room", metadata: ["cold": "\(bytes)"])
                    break
                }
                bytes = min(bytes, max(room, Self.leastReclaim))
            }
            do {
                if try reclaimer.reclaim(bytes) == .reclaimed {
                    if modeReclaims {
                        coldCacheReclaimed += bytes
                    } else {
                        if regrowthReclaimed == 0 { logger.info("reclaiming cold page cache for regrowth toward the host's target") }
                        regrowthReclaimed += bytes
                        regrowthReclaimedTotal += bytes
                    }
                }
            } catch {
                coldCacheUnavailable = "\(error)"
                logger.warning("cold page cache reclaim stopped: \(error)")
                self.governor = nil
                return
            }
        case let .backOff(wait):
            logger.debug("cold page cache reclaim backs off", metadata: ["for-ms": "\(wait.inMilliseconds)"])
            next = wait
        case .nothingCold:
            logger.debug("cold page cache reclaim: nothing cold",
                         metadata: ["inactive-file": "\(sample.inactiveFile)", "active-file": "\(sample.activeFile)"])
        }
        self.governor = governor
        do { try coldTimer.arm(after: next) } catch {
            logger.error("cannot set the cold page cache timer: \(error)")
        }
    }

    /// The least a regrowth asks for: a smaller ask is rounded up to it.
    static let leastReclaim: UInt64 = 1 << 20

    /// As `query` shows it; nil when not configured.
    var coldCacheInfo: QueryReply.FreeMemory.ColdCache? {
        guard config.reclaimColdCache else { return nil }
        let total = coldCacheReclaimed
        if coldCacheUnavailable != nil { return .init(state: .unavailable, reclaimedTotal: total) }
        guard let governor else { return .init(state: .idle, reclaimedTotal: total) }
        return .init(state: governor.backingOff ? .backoff : .reclaiming, reclaimedTotal: total)
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonConfig
import BalloonController
import BalloonProtocol
import BalloonService
import BalloonSystem
import Glibc
import Logging

/// The guest agent: one thread, one epoll instance owning every descriptor
/// (docs/architecture.md). Large moves advance one chunk per loop turn, so a
/// new target, a host's request or a signal is served between chunks.
///
/// This file wires the parts and runs the loop (signals, stepping the
/// controller, publishing events, shutdown); `HostLink` is the channel,
/// `Commands.swift` the request handlers, `Reload.swift` SIGHUP,
/// `PressureWatch` the pressure signals, `FrameTimers` frame reporting's timer.
public final class Daemon {
    enum Token: UInt64 { case signals = 1, retryTimer, statsTimer, watchdogTimer }

    let options: DaemonOptions
    /// This lifetime of the daemon, random: a host names it in `frames-ack`,
    /// so acks meant for a predecessor are refused, not applied (rule 5).
    let instance = Daemon.newInstance()
    var logger: Logger {
        didSet { link.logger = logger; pressure.logger = logger; frames.logger = logger; spares.logger = logger; freeMemory.logger = logger }
    }
    var config: BalloondConfig
    var configSources: [String]
    let epoll: Epoll
    private let signals: SignalDescriptor
    private let retryTimer: TimerDescriptor
    let statsTimer: TimerDescriptor
    private let watchdogTimer: TimerDescriptor
    let notifier: ServiceNotifier
    private var status: ServiceStatus
    let clock = SystemMonotonicClock()
    let sampler: MemorySampler
    let chunks: ChunkStack
    let controller: BalloonController
    let memoryTotal: UInt64
    let link: HostLink
    let pressure: PressureWatch
    let frames: FrameTimers
    let spares: SpareHolderTimer
    let freeMemory: FreeMemoryWatch
    var needsStep = true
    /// Work a command leaves for after its reply is sent (events it causes).
    var afterReply: (() -> Void)?
    private var running = true
    /// Why the loop stopped, if it must exit with an error.
    private var failure: DaemonError?
    /// When the current loop turn woke: the moment a pressure signal is seen.
    private var wokeAt: Duration = .zero
    /// For each DEFLATED the controller has queued, in order: when its signal
    /// was seen, when the first memory went back and when all of it had.
    private var deflateTimings: [DeflateTiming] = []
    private(set) var lastDeflateTiming: DeflateTiming?
    /// The first release of the pressure deflate under way.
    private var firstReturnedAt: Duration?

    /// Sets up everything that can fail before the loop starts: a daemon that
    /// cannot open its channel or read /proc says so and exits non-zero.
    public init(options: DaemonOptions, loaded: LoadedConfig, logger: Logger, notifier: ServiceNotifier = NoServiceNotifier()) throws(DaemonError) {
        self.options = options
        self.notifier = notifier
        self.status = ServiceStatus(notifier: notifier)
        self.config = loaded.config
        self.configSources = loaded.sources
        ProcessControl.ignoreBrokenPipe()
        func setup<T>(_ what: String, _ body: () throws(SystemError) -> T) throws(DaemonError) -> T {
            do { return try body() } catch { throw .setup(what, error) }
        }
        let config = loaded.config
        signals = try setup("the signalfd") { () throws(SystemError) in
            try SignalDescriptor(signals: [SIGTERM, SIGINT, SIGHUP, SIGIO, SIGCHLD] + (options.testFaults ? [SIGUSR2] : []))
        }
        epoll = try setup("epoll") { () throws(SystemError) in try Epoll() }
        retryTimer = try setup("the retry timer") { () throws(SystemError) in try TimerDescriptor() }
        statsTimer = try setup("the stats timer") { () throws(SystemError) in try TimerDescriptor() }
        watchdogTimer = try setup("the watchdog timer") { () throws(SystemError) in try TimerDescriptor() }
        sampler = try setup("/proc readers") { () throws(SystemError) in try MemorySampler() }
        let total: UInt64?
        do { total = try sampler.memoryTotal() } catch { throw .noMemoryTotal(error) }
        guard let total else { throw .noMemoryTotal(nil) }
        memoryTotal = total
        let reporter = FrameReporter(clock: clock, pageSize: UInt64(PageSize.bytes), grace: options.frameReleaseGrace)
        chunks = ChunkStack(hugePageAdvice: Self.hugePageAdvice(config.transparentHugePages), useHolders: config.holderProcesses, reporter: reporter)
        controller = BalloonController(
            limits: Self.limits(config, memoryTotal: memoryTotal), clock: clock, probe: sampler, reserver: chunks)
        controller.policy = Self.policy(config)
        let epoll = self.epoll, chunks = self.chunks, clock = self.clock, controller = self.controller, sampler = self.sampler
        link = try setup("the channel's timer") { () throws(SystemError) in
            try HostLink(registry: epoll, logger: logger, allowedCIDs: config.vsockAllowedCIDs)
        }
        pressure = try setup("the floor check timer") { () throws(SystemError) in
            try PressureWatch(registry: epoll, logger: logger, sampler: sampler, controller: controller, reclaimSignals: config.reclaimSignals)
        }
        frames = try setup("the frame reporting timer") { () throws(SystemError) in
            try FrameTimers(registry: epoll, chunks: chunks, clock: clock, logger: logger, rescanInterval: config.frameRescanInterval)
        }
        frames.movedPages = { [sampler] in sampler.pagesMoved() }
        spares = try setup("the spare holders' timer") { () throws(SystemError) in
            try SpareHolderTimer(registry: epoll, chunks: chunks, logger: logger)
        }
        freeMemory = try setup("the free-memory mode's timers") { () throws(SystemError) in
            try FreeMemoryWatch(registry: epoll, sampler: sampler, controller: controller, clock: clock, logger: logger, config: config)
        }
        self.logger = logger
        try setup("the loop's descriptors") { () throws(SystemError) in
            try epoll.add(signals.descriptor, events: .readable, token: Token.signals.rawValue)
            try epoll.add(retryTimer.descriptor, events: .readable, token: Token.retryTimer.rawValue)
            try epoll.add(statsTimer.descriptor, events: .readable, token: Token.statsTimer.rawValue)
            try epoll.add(watchdogTimer.descriptor, events: .readable, token: Token.watchdogTimer.rawValue)
        }
        // Pinged from this loop at half the supervisor's interval, so a stuck
        // loop (not just a live process) is what the watchdog catches.
        if let interval = notifier.watchdogInterval, interval > .zero {
            try setup("the watchdog timer") { () throws(SystemError) in
                try watchdogTimer.arm(after: max(.milliseconds(1), interval / 2), repeating: true)
            }
        }
        do { try link.open(options.channelOverride ?? config.listen) } catch { throw .channel(error) }
        try setup("the stats timer") { () throws(SystemError) in try setStatsInterval(config.statsInterval) }
        let initial = config.initialTarget.resolve(memTotal: memoryTotal)
        // At most MemTotal: setTarget cannot refuse it.
        if initial > 0 { _ = try? controller.setTarget(min(initial, memoryTotal)) }
        reporter.emit = { [unowned controller] event in controller.post(event) }
        chunks.warn = { [unowned self] message in self.logger.warning("\(message)") }
        chunks.returned = { [unowned self] in
            if self.firstReturnedAt == nil { self.firstReturnedAt = SystemClock.monotonic() }
        }
        link.onItem = { [unowned self] item in self.handle(item) }
        link.onHostGone = { [unowned self] why in
            // Nobody frees the held memory any more: the mode ends with the session.
            self.freeMemory.disable(because: why)
            self.frames.stopReporting(because: why)
        }
        freeMemory.onChange = { [unowned self] in self.needsStep = true }
        pressure.onSignal = { [unowned self] signal in self.applyPressure(signal) }
        chunks.lockInterrupters = { [unowned self] in self.pressure.triggerDescriptors }
        chunks.lockWatch = { [unowned self] holding in
            self.config.lockYieldsToHost ? self.lockWatch(holdingWhenDone: holding) : nil
        }
        pressure.onRecheck = { [unowned self] measure in self.answerPressure { self.controller.recheckBlamedStall(measure) } }
        pressure.openTriggers(config)
        if config.holderProcesses { pressure.protectFromOOMKiller() }
        logger.info("balloond \(balloondVersion) started", metadata: [
            "channel": "\(link.label)",
            "memory-total": "\(HumanBytes.format(memoryTotal))",
            "max-balloon": "\(HumanBytes.format(controller.limits.maxBalloon))",
            "mem-available-floor": "\(HumanBytes.format(controller.limits.availableFloor))",
            "chunk-size": "\(HumanBytes.format(controller.limits.chunkSize))",
            "thp": "\(config.transparentHugePages.rawValue) (\(chunks.hugePageAdvice.rawValue); system \(systemHugePageMode() ?? "none"))",
        ])
    }

    // MARK: - The loop

    /// Runs until SIGTERM/SIGINT, then deflates fully, tells the host, and returns.
    public func run() throws(DaemonError) {
        // The channel is open and MemTotal was read in init; read the first
        // full stats before saying READY=1.
        _ = sampler.virtioStats()
        // Startup is over: the loader's relocation table need not stay resident.
        do {
            if let dropped = try ProcessControl.releaseRelocationTable() {
                logger.debug("dropped the relocation table's \(dropped.count >> 10) KiB from memory")
            }
        } catch { logger.debug("relocation table kept: \(error)") }
        notifier.ready()
        updateStatus()
        while running {
            let ready: [(token: UInt64, events: EpollEvents)]
            do { ready = try epoll.wait(timeout: needsStep ? .zero : nil) } catch { throw .loop(error) }
            wokeAt = SystemClock.monotonic()
            for (token, events) in ready {
                switch Token(rawValue: token) {
                case .signals: handleSignals()
                case .retryTimer:
                    _ = retryTimer.acknowledge()
                    needsStep = true
                case .statsTimer:
                    _ = statsTimer.acknowledge()
                    controller.post(.stats(statsReply()))
                case .watchdogTimer:
                    _ = watchdogTimer.acknowledge()
                    notifier.watchdog()
                case nil:
                    if token == FrameTimers.token {
                        frames.fired()
                    } else if token == SpareHolderTimer.token {
                        spares.fired()
                    } else if !link.handle(token: token, events: events), !pressure.handle(token: token), !freeMemory.handle(token: token) {
                        logger.warning("epoll reported an unknown token \(token)")
                    }
                }
                if !running { break }
            }
            if needsStep && running { stepController() }
            publishEvents()
            frames.rearm()
            spares.rearm()
            pressure.rearmFloorTimer()
            updateStatus()
        }
        notifier.stopping()
        notifier.status("stopping: deflating")
        shutdown()
        if let failure { throw failure }
    }

    /// Ends the loop after this turn; `run()` deflates, then throws `failure`.
    func stop(failure: DaemonError) {
        self.failure = failure
        running = false
    }

    private func updateStatus() { status.update(controller, host: link.hostState) }

    private func stepController() {
        let outcome = controller.step()
        defer {
            // Answered once the step that locked is over (between chunks),
            // as is what the host sent meanwhile.
            for tier in chunks.takeFiredDuringLock() { pressure.firedDuringLock(tier) }
            link.dispatchHeld()
        }
        switch outcome {
        case .more: needsStep = true
        case let .waitUntil(when):
            needsStep = false
            let now = clock.now
            armRetry(after: max(.milliseconds(1), when - now))
        case .idle:
            needsStep = false
            armRetry(after: .zero)
        }
    }

    /// Zero disarms. A timer that cannot be set leaves the retry to the next
    /// event that steps the controller; said in the log.
    private func armRetry(after delay: Duration) {
        do { try retryTimer.arm(after: delay) } catch {
            logger.error("cannot set the retry timer: \(error)")
        }
    }

    /// Sends the queued events (the controller's, the frame reporter's,
    /// STATS), logging the ones an operator wants to see.
    func publishEvents() {
        for var event in controller.takeEvents() {
            switch event {
            case let .targetReached(p):
                logger.info("target reached", metadata: ["actual": "\(HumanBytes.format(p.actual))"])
            case let .targetUnreachable(p, reason):
                var metadata: Logger.Metadata = ["actual": "\(HumanBytes.format(p.actual))", "target": "\(HumanBytes.format(p.target))"]
                if let failure = controller.reserveFailure { metadata["cause"] = "\(failure.cause)" }
                logger.notice("target unreachable: \(reason.desc)", metadata: metadata)
            case var .deflated(d):
                var metadata: Logger.Metadata = ["actual": "\(HumanBytes.format(d.actual))"]
                if !deflateTimings.isEmpty {
                    let timing = deflateTimings.removeFirst()
                    metadata["latency-us"] = "\(timing.signalAt.duration(to: timing.deflatedAt).inMicroseconds)"
                    if let first = timing.firstReturnedAt {
                        metadata["first-returned-us"] = "\(timing.signalAt.duration(to: first).inMicroseconds)"
                    }
                    d.timing = timing
                    event = .deflated(d)
                }
                logger.notice("pressure: gave back \(HumanBytes.format(d.bytes)) (\(d.reason.rawValue))", metadata: metadata)
            default: break
            }
            link.send(Message.event(event.event(at: wallClockTimestamp())).encoded())
        }
    }

    // MARK: - Signals

    private func handleSignals() {
        while let signo = signals.next() {
            switch signo {
            case SIGTERM, SIGINT:
                logger.info("signal \(signo == SIGTERM ? "SIGTERM" : "SIGINT"): deflating and stopping")
                running = false
            case SIGHUP: reload()
            case SIGIO: link.checkPortAttached()
            case SIGCHLD:
                let lost = chunks.reapDeadHolders()
                if lost > 0 {
                    logger.warning("the kernel's OOM killer took a balloon holder: \(HumanBytes.format(lost)) of balloon memory is gone; no workload was killed for it")
                    applyPressure(.holderKilled(bytes: lost))
                }
            case SIGUSR2 where options.testFaults:
                logger.warning("test fault: stalling the event loop (BALLOOND_TEST_FAULTS)")
                ProcessControl.stallForever()
            default: break
            }
        }
    }

    /// Hands a signal to the controller, noting when it was seen, when the
    /// first memory and when all of it was back (the controller gives it back
    /// synchronously), for DEFLATED's `signal-at`/`first-returned-at`/
    /// `deflated-at`; the loop then steps the controller. A signal blamed on
    /// growth is measured again shortly (`onRecheck`), answered if it went on.
    private func applyPressure(_ signal: PressureSignal) {
        answerPressure { (signal, controller.pressure(signal)) }
    }

    private func answerPressure(_ answer: () -> (signal: PressureSignal, given: UInt64)?) {
        firstReturnedAt = nil
        let answered = answer()
        pressure.scheduleRecheck()
        guard let (signal, given) = answered else { return }
        freeMemory.syncSampling()
        if given > 0 {
            let timing = DeflateTiming(
                signalAt: .init(wokeAt), firstReturnedAt: firstReturnedAt.map(MonotonicTimestamp.init),
                deflatedAt: .init(SystemClock.monotonic()))
            deflateTimings.append(timing)
            lastDeflateTiming = timing
        }
        logger.debug("pressure signal \(signal.reason.rawValue)", metadata: ["gave-back": "\(HumanBytes.format(given))"])
        needsStep = true
    }

    /// 128 random bits in hex (the standard library's generator: getrandom).
    static func newInstance() -> String {
        var rng = SystemRandomNumberGenerator()
        return [rng.next(), rng.next()].map { (v: UInt64) in
            let hex = String(v, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }

    private func shutdown() {
        freeMemory.disable(because: "stopping")
        if controller.actual > 0 || controller.target > 0 {
            _ = try? controller.setTarget(0)  // 0 is never above MemTotal.
            while controller.step() == .more {}
        }
        publishEvents()
        // Memory the host has not finished freeing is given a moment: serve
        // the connection until the acks arrive or the grace ends.
        if chunks.reporter.pendingBytes > 0, let deadline = chunks.reporter.nextDeadline {
            link.serve(until: { chunks.reporter.pendingBytes == 0 }, within: deadline - clock.now)
        }
        chunks.releaseAll()
        publishEvents()
        // Best effort: give the host up to a second to take the last events.
        link.serve(until: { !link.hasPendingOutput }, within: .seconds(1))
        link.close()
        logger.info("stopped; balloon released")
    }

    func setStatsInterval(_ interval: Duration) throws(SystemError) {
        try statsTimer.arm(every: interval)
    }
}

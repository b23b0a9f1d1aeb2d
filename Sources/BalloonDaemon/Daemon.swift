import BalloonConfig
import BalloonController
import BalloonProtocol
import BalloonSystem
import Glibc
import Logging

public let balloondVersion = BalloondVersion.current

public struct DaemonOptions: Sendable {
    public var configPath: String
    /// True when given with --config: a missing file is then an error.
    public var configRequired: Bool
    /// --channel overrides Listen= (also across reloads).
    public var channelOverride: ChannelSpec?
    /// Test-only fault switches (BALLOOND_TEST_FAULTS=1): SIGUSR2 stalls the
    /// loop forever, so tests can see the watchdog restart the daemon.
    public var testFaults: Bool

    public init(configPath: String, configRequired: Bool, channelOverride: ChannelSpec?, testFaults: Bool = false) {
        self.configPath = configPath
        self.configRequired = configRequired
        self.channelOverride = channelOverride
        self.testFaults = testFaults
    }
}

/// The guest agent: one thread, one epoll instance owning every descriptor
/// (DESIGN §2). Large moves advance one chunk per loop turn, so a new target,
/// a host's request or a signal is served between chunks.
public final class Daemon {
    private enum Token: UInt64 {
        case signals = 1, retryTimer, statsTimer, reattachTimer, watchdogTimer, frameTimer, floorTimer, listener, connection
        case lightTrigger = 100, heavyTrigger, severeTrigger
    }

    private let options: DaemonOptions
    private var logger: Logger
    private var config: BalloondConfig
    private var configSources: [String]
    private let epoll: Epoll
    private let signals: SignalDescriptor
    private let retryTimer: TimerDescriptor
    private let statsTimer: TimerDescriptor
    private let reattachTimer: TimerDescriptor
    private let watchdogTimer: TimerDescriptor
    /// Frame reporting: releases waiting past their grace time, and rescans.
    private let frameTimer: TimerDescriptor
    private var frameTimerAt: UInt64?
    private var nextRescanAt: UInt64?
    /// Pressure: PSI triggers by tier, the floor/vmstat timer, counters.
    private var triggers: [PressureSignal.Tier: ActiveTrigger] = [:]
    private let floorTimer: TimerDescriptor
    private var floorTimerInterval: UInt64?
    private var reclaimBaseline: ReclaimCounters?
    private var protectedFromOOM = false
    /// When the current loop turn woke (CLOCK_MONOTONIC µs): the moment a
    /// PSI trigger or the floor timer is seen.
    private var wokeAt: UInt64 = 0
    /// For each DEFLATED the controller has queued, in order: when its signal
    /// was seen, when the first memory went back and when all of it had (µs).
    private var deflateTimes: [DeflateTimes] = []
    private var lastDeflateTimes: DeflateTimes?
    /// The first release of the pressure deflate under way (µs).
    private var firstReturnedAt: UInt64?
    private let notifier: ServiceNotifier
    private var lastStatus = ""
    private let clock = SystemMonotonicClock()
    private let sampler: MemorySampler
    private let reserver: RegionReserver
    private let controller: BalloonController
    private let memoryTotal: UInt64
    private var endpoint: ChannelEndpoint?
    private var connection: HostConnection?
    /// For a virtio port: whether the port is in epoll (a host is attached).
    private var portAttached = false
    private var statsIntervalMilliseconds: UInt64 = 0
    private var needsStep = true
    /// Work a command leaves for after its reply is sent (events it causes).
    private var afterReply: (() -> Void)?
    private var running = true
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

    /// Sets up everything that can fail before the loop starts: a daemon that
    /// cannot open its channel or read /proc says so and exits non-zero.
    public init(options: DaemonOptions, loaded: LoadedConfig, logger: Logger, notifier: ServiceNotifier = NoServiceNotifier()) throws {
        self.options = options
        self.notifier = notifier
        self.logger = logger
        self.config = loaded.config
        self.configSources = loaded.sources
        signal(SIGPIPE, SIG_IGN)
        signals = try SignalDescriptor(signals: [SIGTERM, SIGINT, SIGHUP, SIGIO, SIGCHLD] + (options.testFaults ? [SIGUSR2] : []))
        epoll = try Epoll()
        retryTimer = try TimerDescriptor()
        statsTimer = try TimerDescriptor()
        reattachTimer = try TimerDescriptor()
        watchdogTimer = try TimerDescriptor()
        frameTimer = try TimerDescriptor()
        floorTimer = try TimerDescriptor()
        sampler = try MemorySampler()
        guard let total = sampler.memoryTotal() else {
            throw DaemonError("cannot read MemTotal from /proc/meminfo")
        }
        memoryTotal = total
        reserver = RegionReserver(hugePageAdvice: Self.hugePageAdvice(config.transparentHugePages), useHolders: config.holderProcesses, clock: clock)
        controller = BalloonController(
            limits: Self.limits(config, memoryTotal: total), clock: clock, probe: sampler, reserver: reserver)
        try epoll.add(signals.descriptor.raw, events: .readable, token: Token.signals.rawValue)
        try epoll.add(retryTimer.descriptor.raw, events: .readable, token: Token.retryTimer.rawValue)
        try epoll.add(statsTimer.descriptor.raw, events: .readable, token: Token.statsTimer.rawValue)
        try epoll.add(reattachTimer.descriptor.raw, events: .readable, token: Token.reattachTimer.rawValue)
        try epoll.add(watchdogTimer.descriptor.raw, events: .readable, token: Token.watchdogTimer.rawValue)
        try epoll.add(frameTimer.descriptor.raw, events: .readable, token: Token.frameTimer.rawValue)
        try epoll.add(floorTimer.descriptor.raw, events: .readable, token: Token.floorTimer.rawValue)
        controller.policy = Self.policy(config)
        // Pinged from this loop at half the supervisor's interval, so a stuck
        // loop (not just a live process) is what the watchdog catches.
        if let interval = notifier.watchdogIntervalMilliseconds, interval > 0 {
            try watchdogTimer.arm(afterMilliseconds: max(1, interval / 2), repeating: true)
        }
        try openChannel(options.channelOverride ?? config.listen)
        try setStatsInterval(config.statsIntervalMilliseconds)
        let initial = config.initialTarget.resolve(memTotal: total)
        if initial > 0 { _ = try? controller.setTarget(min(initial, total)) }
        reserver.emit = { [unowned self] name, data in self.sendEvent(name, data: data) }
        reserver.warn = { [unowned self] message in self.logger.warning("\(message)") }
        reserver.returned = { [unowned self] in
            if self.firstReturnedAt == nil { self.firstReturnedAt = self.monotonicMicroseconds() }
        }
        openTriggers()
        if config.holderProcesses { protectFromOOMKiller() }
        logger.info("balloond \(balloondVersion) started", metadata: [
            "channel": "\(endpoint?.label ?? "-")",
            "memory-total": "\(HumanBytes.format(total))",
            "max-balloon": "\(HumanBytes.format(controller.limits.maxBalloon))",
            "mem-available-floor": "\(HumanBytes.format(controller.limits.availableFloor))",
            "chunk-size": "\(HumanBytes.format(controller.limits.chunkSize))",
            "thp": "\(config.transparentHugePages.rawValue) (\(reserver.hugePageAdvice.rawValue); system \(systemHugePageMode() ?? "none"))",
        ])
    }

    deinit { scratch.deallocate() }

    /// `auto` follows the system: with THP `always` the kernel already uses
    /// huge pages where free, and MADV_HUGEPAGE would add direct compaction
    /// stalls (which count as memory pressure); with `madvise` huge pages come
    /// only when asked for.
    static func hugePageAdvice(_ mode: HugePageMode) -> HugePageAdvice {
        switch mode {
        case .yes: return .advise
        case .no: return .forbid
        case .auto: return systemHugePageMode() == "madvise" ? .advise : .leave
        }
    }

    static func limits(_ config: BalloondConfig, memoryTotal: UInt64) -> BalloonLimits {
        BalloonLimits(
            memoryTotal: memoryTotal,
            maxBalloon: config.maxBalloon.resolve(memTotal: memoryTotal),
            availableFloor: config.floorBytes(memTotal: memoryTotal),
            chunkSize: config.chunkSize,
            pageSize: UInt64(PageSize.bytes))
    }

    // MARK: - The loop

    /// Runs until SIGTERM/SIGINT, then deflates fully, tells the host, and returns.
    public func run() throws {
        // The channel is open and MemTotal was read in init; read the first
        // full stats before saying READY=1.
        _ = sampler.virtioStats()
        notifier.ready()
        updateStatus()
        while running {
            let ready = try epoll.wait(timeoutMilliseconds: needsStep ? 0 : -1)
            wokeAt = monotonicMicroseconds()
            for (token, events) in ready {
                switch Token(rawValue: token) {
                case .signals: handleSignals()
                case .retryTimer:
                    retryTimer.acknowledge()
                    needsStep = true
                case .statsTimer:
                    statsTimer.acknowledge()
                    sendEvent(EventName.stats, data: sampler.statsJSON(target: controller.target, actual: controller.actual))
                case .reattachTimer:
                    reattachTimer.acknowledge()
                    checkPortAttached()
                case .watchdogTimer:
                    watchdogTimer.acknowledge()
                    notifier.watchdog()
                case .frameTimer:
                    frameTimer.acknowledge()
                    frameTimerAt = nil
                    frameTimerFired()
                case .floorTimer:
                    floorTimer.acknowledge()
                    checkFloorAndReclaim()
                case .lightTrigger: pressureTriggerFired(.light)
                case .heavyTrigger: pressureTriggerFired(.heavy)
                case .severeTrigger: pressureTriggerFired(.severe)
                case .listener: acceptConnections()
                case .connection: serviceConnection(events)
                case nil: logger.warning("epoll reported an unknown token \(token)")
                }
                if !running { break }
            }
            if needsStep && running { stepController() }
            rearmFrameTimer()
            rearmFloorTimer()
            updateStatus()
        }
        notifier.stopping()
        notifier.status("stopping: deflating")
        shutdown()
    }

    /// `STATUS=` for systemctl status; sent only when it changes.
    private func updateStatus() {
        let host: String = if case .virtioSerial? = endpoint { portAttached ? "attached" : "not attached" }
            else { connection != nil ? "connected" : "not connected" }
        var text = "target \(HumanBytes.format(controller.target)), actual \(HumanBytes.format(controller.actual)), \(controller.state.rawValue), host \(host)"
        if let reason = controller.reason { text += " (\(reason.code))" }
        if let quiet = controller.quietUntil, quiet > clock.milliseconds { text += ", pressure backoff" } else { text += ", no pressure" }
        guard text != lastStatus else { return }
        lastStatus = text
        notifier.status(text)
    }

    private func stepController() {
        let outcome = controller.step()
        publishControllerEvents()
        switch outcome {
        case .more: needsStep = true
        case let .waitUntil(when):
            needsStep = false
            let now = clock.milliseconds
            try? retryTimer.arm(afterMilliseconds: max(1, when > now ? when - now : 1))
        case .idle:
            needsStep = false
            try? retryTimer.disarm()
        }
    }

    private func publishControllerEvents() {
        for event in controller.takeEvents() {
            switch event {
            case let .balloonChange(actual, target):
                sendEvent(EventName.balloonChange, data: ["actual": .uint(actual), "target": .uint(target)])
            case let .targetReached(actual, target):
                logger.info("target reached", metadata: ["actual": "\(HumanBytes.format(actual))"])
                sendEvent(EventName.targetReached, data: ["actual": .uint(actual), "target": .uint(target)])
            case let .deflated(bytes, reason, actual):
                let times = deflateTimes.isEmpty ? nil : deflateTimes.removeFirst()
                var metadata: Logger.Metadata = ["actual": "\(HumanBytes.format(actual))"]
                var data: [(String, JSON)] = [("bytes", .uint(bytes)), ("reason", .string(reason.name)), ("actual", .uint(actual))]
                if let times {
                    metadata["latency-us"] = "\(times.deflatedAt - times.signalAt)"
                    if let first = times.firstReturnedAt { metadata["first-returned-us"] = "\(first - times.signalAt)" }
                    data += times.fields
                }
                logger.notice("pressure: gave back \(HumanBytes.format(bytes)) (\(reason.name))", metadata: metadata)
                sendEvent(EventName.deflated, data: .object(data))
            case let .targetUnreachable(actual, target, reason):
                logger.notice("target unreachable: \(reason.desc)", metadata: [
                    "actual": "\(HumanBytes.format(actual))", "target": "\(HumanBytes.format(target))",
                ])
                sendEvent(EventName.targetUnreachable, data: [
                    "actual": .uint(actual), "target": .uint(target),
                    "reason": ["code": .string(reason.code), "desc": .string(reason.desc)],
                ])
            }
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
            case SIGIO: checkPortAttached()
            case SIGCHLD:
                let lost = reserver.reapDeadHolders()
                if lost > 0 {
                    logger.warning("the kernel's OOM killer took a balloon holder: \(HumanBytes.format(lost)) of balloon memory is gone; no workload was killed for it")
                    applyPressure(.holderKilled(bytes: lost))
                }
            case SIGUSR2 where options.testFaults:
                logger.warning("test fault: stalling the event loop (BALLOOND_TEST_FAULTS)")
                while true { sleep(3600) }
            default: break
            }
        }
    }

    private func shutdown() {
        if controller.actual > 0 || controller.target > 0 {
            _ = try? controller.setTarget(0)
            while controller.step() == .more {}
            publishControllerEvents()
        }
        waitForFrameAcks()
        reserver.releaseAll()
        if let connection, connection.hasPendingOutput {
            // Best effort: give the host up to a second to take the last events.
            var p = pollfd(fd: connection.descriptor.raw, events: Int16(POLLOUT), revents: 0)
            var waited = 0
            while connection.hasPendingOutput, waited < 1000, poll(&p, 1, 100) >= 0 {
                try? connection.flush()
                waited += 100
            }
        }
        endpoint?.close()
        logger.info("stopped; balloon released")
    }

    // MARK: - Configuration

    private func reload() {
        notifier.reloading()
        defer { notifier.ready() }
        let loaded: LoadedConfig
        do {
            loaded = try ConfigLoader.load(path: options.configPath, required: options.configRequired)
        } catch {
            logger.error("reload failed, keeping the previous configuration: \(error)")
            return
        }
        let old = config
        let newChannel = options.channelOverride ?? loaded.config.listen
        if newChannel != (options.channelOverride ?? old.listen) {
            let previous = endpoint
            do {
                detachEndpoint()
                try openChannel(newChannel)
                previous?.close()
            } catch {
                logger.error("reload: cannot open \(newChannel), keeping \(previous?.label ?? "-") and the previous configuration: \(error)")
                if let previous { try? adoptEndpoint(previous) }
                return
            }
        }
        config = loaded.config
        configSources = loaded.sources
        logger.logLevel = Logger.Level(config.logLevel)
        reserver.hugePageAdvice = Self.hugePageAdvice(config.transparentHugePages)
        reserver.useHolders = config.holderProcesses
        controller.policy = Self.policy(config)
        if config.lightTrigger != old.lightTrigger || config.heavyTrigger != old.heavyTrigger || config.severeTrigger != old.severeTrigger {
            closeTriggers()
            openTriggers()
        }
        if config.holderProcesses && !protectedFromOOM { protectFromOOMKiller() }
        let limits = Self.limits(config, memoryTotal: memoryTotal)
        if limits != controller.limits {
            controller.updateLimits(limits)
            needsStep = true
        }
        if config.statsIntervalMilliseconds != old.statsIntervalMilliseconds {
            try? setStatsInterval(config.statsIntervalMilliseconds)
        }
        logger.info("configuration reloaded", metadata: ["sources": "\(configSources.joined(separator: ", "))"])
    }

    private func setStatsInterval(_ milliseconds: UInt64) throws(SystemError) {
        statsIntervalMilliseconds = milliseconds
        try statsTimer.arm(afterMilliseconds: milliseconds, repeating: true)
    }

    // MARK: - Channel and connections

    private func openChannel(_ spec: ChannelSpec) throws(SystemError) {
        try adoptEndpoint(try ChannelEndpoint.open(spec))
    }

    private func adoptEndpoint(_ new: ChannelEndpoint) throws(SystemError) {
        endpoint = new
        switch new {
        case let .listener(fd, _):
            try epoll.add(fd.raw, events: .readable, token: Token.listener.rawValue)
        case let .virtioSerial(fd, path):
            connection = HostConnection(descriptor: fd, peer: path)
            portAttached = false
            checkPortAttached()
        }
    }

    private func detachEndpoint() {
        if let connection { epoll.remove(connection.descriptor.raw) }
        if case let .listener(fd, _)? = endpoint { epoll.remove(fd.raw) }
        connection = nil
        portAttached = false
        try? reattachTimer.disarm()
        endpoint = nil
    }

    private func acceptConnections() {
        guard case let .listener(listener, spec)? = endpoint else { return }
        while true {
            let accepted: (Descriptor, String)?
            do {
                if case .vsock = spec {
                    guard let (fd, cid) = try StreamSocket.acceptVsock(listener) else { return }
                    guard config.vsockAllowedCIDs.allows(cid) else {
                        logger.warning("refused a vsock connection from CID \(cid) (VsockAllowedCIDs=)")
                        fd.close()
                        continue
                    }
                    accepted = (fd, "vsock CID \(cid)")
                } else {
                    accepted = try StreamSocket.accept(listener).map { ($0, "unix client") }
                }
            } catch {
                logger.error("accept failed: \(error)")
                return
            }
            guard let (fd, peer) = accepted else { return }
            if let old = connection {
                logger.info("a newer host connection replaces the previous one")
                stopFrameReporting(because: "a newer host connection replaced the previous one")
                epoll.remove(old.descriptor.raw)
                old.descriptor.close()
            }
            connection = HostConnection(descriptor: fd, peer: peer)
            do {
                try epoll.add(fd.raw, events: [.readable, .peerClosed], token: Token.connection.rawValue)
                logger.info("host connected", metadata: ["peer": "\(peer)"])
            } catch {
                logger.error("cannot watch the new connection: \(error)")
                connection = nil
            }
        }
    }

    private var isVirtioPort: Bool {
        if case .virtioSerial? = endpoint { return true }
        return false
    }

    /// virtio-serial: while no host is attached the port reports HUP without
    /// end, so it leaves epoll and comes back on SIGIO (or the slow timer).
    private func checkPortAttached() {
        guard case let .virtioSerial(fd, path)? = endpoint, !portAttached else { return }
        guard VirtioSerialPort.hostAttached(fd) else {
            try? reattachTimer.arm(afterMilliseconds: 5000, repeating: true)
            return
        }
        do {
            try epoll.add(fd.raw, events: .readable, token: Token.connection.rawValue)
            portAttached = true
            try? reattachTimer.disarm()
            logger.info("host attached", metadata: ["port": "\(path)"])
            if let connection, connection.hasPendingOutput { watchWritable(true) }
        } catch {
            logger.error("cannot watch \(path): \(error)")
        }
    }

    private func hostGone() {
        guard let connection else { return }
        stopFrameReporting(because: "the host went away")
        epoll.remove(connection.descriptor.raw)
        connection.discardOutput()
        connection.framer = LineFramer()
        if isVirtioPort {
            portAttached = false
            logger.info("host detached", metadata: ["port": "\(connection.peer)"])
            try? reattachTimer.arm(afterMilliseconds: 5000, repeating: true)
        } else {
            logger.info("host disconnected", metadata: ["peer": "\(connection.peer)"])
            connection.descriptor.close()
            self.connection = nil
        }
    }

    private func serviceConnection(_ events: EpollEvents) {
        guard let connection else { return }
        if events.contains(.writable) {
            do {
                try connection.flush()
                if !connection.hasPendingOutput { watchWritable(false) }
            } catch {
                logger.warning("write to host failed: \(error)")
                hostGone()
                return
            }
        }
        guard !events.isDisjoint(with: [.readable, .hangup, .error, .peerClosed]) else { return }
        // Bounded per turn so a flood cannot starve the balloon's progress.
        for _ in 0..<16 {
            let result: HostConnection.ReadResult
            do {
                result = try connection.readAvailable(into: scratch)
            } catch {
                logger.warning("read from host failed: \(error)")
                hostGone()
                return
            }
            switch result {
            case .wouldBlock: return
            case .closed:
                hostGone()
                return
            case let .items(items):
                for item in items { handle(item) }
                if self.connection !== connection { return }
            }
        }
    }

    private func watchWritable(_ on: Bool) {
        guard let connection else { return }
        let events: EpollEvents = isVirtioPort ? .readable : [.readable, .peerClosed]
        try? epoll.modify(connection.descriptor.raw, events: on ? events.union(.writable) : events, token: Token.connection.rawValue)
    }

    private func send(_ bytes: [UInt8]) {
        guard let connection, !isVirtioPort || portAttached else { return }
        do {
            if try !connection.send(bytes) {
                logger.warning("host is not reading; dropped \(HostConnection.maxOutboxBytes) bytes of output")
                connection.discardOutput()
            }
            if connection.hasPendingOutput { watchWritable(true) }
        } catch {
            logger.warning("write to host failed: \(error)")
            hostGone()
        }
    }

    private func sendEvent(_ name: String, data: JSON) {
        send(Message.event(Event(name, data: data, timestamp: wallClockTimestamp())).encoded())
    }

    // MARK: - Requests

    private func handle(_ item: LineFramer.Item) {
        switch item {
        case .resync: break
        case let .tooLong(limit):
            reply(Response(id: nil, result: .failure(ProtocolError(.lineTooLong, "line longer than \(limit) bytes discarded"))))
        case let .line(bytes):
            let message: Message
            do {
                message = try Message.decode(bytes)
            } catch {
                reply(Response(id: nil, result: .failure(error)))
                return
            }
            guard case let .request(request) = message else {
                reply(Response(id: nil, result: .failure(ProtocolError(.malformedMessage, "the guest accepts only requests (\"execute\")"))))
                return
            }
            let result: Result<JSON, ProtocolError>
            do {
                result = .success(try execute(request))
            } catch {
                result = .failure(error)
            }
            if request.execute == CommandName.sync, case .success = result { send([LineFramer.resyncByte]) }
            reply(Response(id: request.id, result: result))
            if let work = afterReply {
                afterReply = nil
                work()
            }
        }
    }

    private func reply(_ response: Response) {
        send(Message.response(response).encoded())
    }

    private func execute(_ request: Request) throws(ProtocolError) -> JSON {
        let args = Arguments(request)
        switch request.execute {
        case CommandName.sync:
            try args.allowOnly(["id"])
            guard let id = request.arguments["id"] else {
                throw ProtocolError(.invalidParameter, "sync: missing argument \"id\"")
            }
            return id
        case CommandName.info:
            try args.allowOnly([])
            let limits = controller.limits
            return [
                "version": .string(balloondVersion), "protocol": .int(Int64(ProtocolVersion.current)),
                "features": ["stats", "stats-events", "balloon-events", "frame-reporting"],
                "page-size": .uint(limits.pageSize), "memory-total": .uint(limits.memoryTotal),
                "max-balloon": .uint(limits.maxBalloon), "mem-available-floor": .uint(limits.availableFloor),
                "chunk-size": .uint(limits.chunkSize), "transparent-huge-pages": .bool(reserver.hugePageAdvice != .forbid && systemHugePageMode().map { $0 != "never" } == true),
                "huge-page-advice": .string(reserver.hugePageAdvice.rawValue),
                "channel": .string(endpoint?.label ?? ""),
                "pressure-triggers": .array(PressureSignal.Tier.allCases.compactMap { tier in
                    triggers[tier].map { t in
                        ["tier": .string(tier.rawValue), "requested": .string(t.requested), "active": .string(t.active),
                         "two-second-fallback": .bool(t.fallback)]
                    }
                }),
                "holder-processes": .bool(config.holderProcesses),
                "protected-from-oom-killer": .bool(protectedFromOOM),
            ]
        case CommandName.setTarget:
            try args.allowOnly(["target"])
            let requested = try args.uint64("target")
            let target: UInt64
            do {
                target = try controller.setTarget(requested)
            } catch {
                throw ProtocolError(.invalidParameter, "set-target: \(error)")
            }
            needsStep = true
            logger.info("new target", metadata: [
                "target": "\(HumanBytes.format(target))", "actual": "\(HumanBytes.format(controller.actual))",
            ])
            return ["target": .uint(target), "effective-target": .uint(controller.effectiveTarget), "actual": .uint(controller.actual)]
        case CommandName.query:
            try args.allowOnly([])
            return queryJSON()
        case CommandName.stats:
            try args.allowOnly([])
            return sampler.statsJSON(target: controller.target, actual: controller.actual)
        case CommandName.setStatsInterval:
            try args.allowOnly(["interval-ms"])
            let ms = try args.uint64("interval-ms")
            guard ms == 0 || (ms >= 100 && ms <= 86_400_000) else {
                throw ProtocolError(.invalidParameter, "set-stats-interval: \"interval-ms\" must be 0 (off) or between 100 and 86400000, got \(ms)")
            }
            do { try setStatsInterval(ms) } catch {
                throw ProtocolError(.genericError, "set-stats-interval: \(error)")
            }
            return ["interval-ms": .uint(ms)]
        case CommandName.setFrameReporting:
            try args.allowOnly(["enabled"])
            guard let enabled = try args.optionalBool("enabled") else {
                throw ProtocolError(.invalidParameter, "set-frame-reporting: missing argument \"enabled\"")
            }
            var frames = 0
            if enabled {
                do { frames = try reserver.enableFrameReporting() } catch {
                    throw ProtocolError(.genericError, "set-frame-reporting: \(error)")
                }
                afterReply = { [unowned self] in self.reserver.reportHeldFrames() }
                nextRescanAt = config.frameRescanIntervalMilliseconds > 0
                    ? clock.milliseconds + config.frameRescanIntervalMilliseconds : nil
                logger.info("frame reporting on", metadata: ["frames": "\(frames)"])
            } else {
                stopFrameReporting(because: "the host asked")
            }
            return ["enabled": .bool(enabled), "page-size": .uint(controller.limits.pageSize), "frames": .uint(UInt64(frames))]
        case CommandName.framesAck:
            try args.allowOnly(["seq"])
            let seq = try args.uint64("seq")
            reserver.acknowledge(seq)
            return ["acked": .uint(seq)]
        case CommandName.rescanFrames:
            try args.allowOnly([])
            guard reserver.reportingFrames else {
                throw ProtocolError(.genericError, "rescan-frames: frame reporting is off (set-frame-reporting first)")
            }
            return ["moved": .uint(UInt64(reserver.rescanFrames()))]
        default:
            throw ProtocolError(.commandNotFound, "no command \"\(request.execute)\" (known: \(CommandName.all.joined(separator: ", ")))")
        }
    }

    // MARK: - Pressure

    struct ActiveTrigger {
        var trigger: PressureTrigger
        var requested: String
        var active: String
        var fallback: Bool
    }

    static func policy(_ config: BalloondConfig) -> PressurePolicy {
        var policy = PressurePolicy()
        policy.lightStepPercent = config.lightStepPercent
        policy.floorMargin = config.floorMargin
        policy.quietPeriod = config.quietPeriodMilliseconds
        return policy
    }

    /// Opens the configured PSI triggers. Without CAP_SYS_RESOURCE the kernel
    /// takes only windows that are multiples of 2 s: such a trigger falls
    /// back to a 2 s window with the same stall share, said once in the log
    /// and in `info`.
    private func openTriggers() {
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
            let stall = spec.stallMilliseconds * 1000, window = spec.windowMilliseconds * 1000
            var active: PressureTrigger?
            var fallback = false
            do {
                active = try PressureTrigger(kind: kind, stallMicroseconds: stall, windowMicroseconds: window)
            } catch where error.errno == .invalidArgument && window % PressureTrigger.unprivilegedWindowGranularity != 0 {
                let twoSeconds = PressureTrigger.unprivilegedWindowGranularity
                active = try? PressureTrigger(kind: kind, stallMicroseconds: stall * twoSeconds / window, windowMicroseconds: twoSeconds)
                fallback = active != nil
                if fallback { fellBack.append("\(tier.rawValue) \(spec)") }
            } catch {
                logger.error("cannot set the \(tier.rawValue) PSI trigger \"\(spec)\": \(error)")
            }
            guard let active else { continue }
            do {
                try epoll.add(active.descriptor.raw, events: .priority, token: token.rawValue)
                let shown = "\(active.kind.rawValue) \(active.stallMicroseconds / 1000)ms \(active.windowMicroseconds / 1000)ms"
                triggers[tier] = ActiveTrigger(trigger: active, requested: spec.description, active: shown, fallback: fallback)
            } catch {
                logger.error("cannot watch the \(tier.rawValue) PSI trigger: \(error)")
            }
        }
        if !fellBack.isEmpty {
            logger.warning("PSI triggers with windows that are not multiples of 2 s need CAP_SYS_RESOURCE; using 2 s windows with the same stall share for: \(fellBack.joined(separator: ", "))")
        }
    }

    private func closeTriggers() {
        for (_, t) in triggers { epoll.remove(t.trigger.descriptor.raw) }
        triggers.removeAll()
    }

    /// CLOCK_MONOTONIC in microseconds (DEFLATED `signal-at`/`deflated-at`:
    /// the same clock as `clock_gettime(CLOCK_MONOTONIC)` anywhere in the guest).
    private func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }

    /// Hands a signal to the controller, noting when it was seen, when the
    /// first memory and when all of it was back (the controller gives it back
    /// synchronously), for DEFLATED's `signal-at`/`first-returned-at`/
    /// `deflated-at`; the loop then steps the controller.
    @discardableResult
    private func applyPressure(_ signal: PressureSignal) -> UInt64 {
        firstReturnedAt = nil
        let given = controller.pressure(signal)
        if given > 0 {
            let deflatedAt = monotonicMicroseconds()
            let times = DeflateTimes(signalAt: wokeAt, firstReturnedAt: firstReturnedAt, deflatedAt: deflatedAt)
            deflateTimes.append(times)
            lastDeflateTimes = times
        }
        needsStep = true
        return given
    }

    private func pressureTriggerFired(_ tier: PressureSignal.Tier) {
        let given = applyPressure(.psi(tier))
        logger.debug("PSI \(tier.rawValue) trigger fired", metadata: ["gave-back": "\(HumanBytes.format(given))"])
    }

    /// The OOM killer must take holders, never the daemon (which would lose
    /// every chunk's bookkeeping): oom_score_adj=-1000 (CAP_SYS_RESOURCE).
    private func protectFromOOMKiller() {
        do {
            let fd = try Descriptor.open("/proc/self/oom_score_adj", flags: O_WRONLY)
            try fd.writeAll(Array("-1000".utf8))
            protectedFromOOM = true
        } catch {
            logger.warning("cannot protect balloond from the OOM killer (oom_score_adj=-1000 needs CAP_SYS_RESOURCE or OOMScoreAdjust= in the unit): \(error)")
        }
    }

    /// The timer runs only while the balloon holds memory, faster near the floor.
    private func rearmFloorTimer() {
        let interval = controller.floorCheckInterval(available: controller.actual > 0 ? sampler.lastAvailable : nil)
        guard interval != floorTimerInterval else { return }
        if floorTimerInterval == nil {
            // Starting: counters that rose while the balloon was empty are not news.
            reclaimBaseline = readReclaimCounters()
        }
        floorTimerInterval = interval
        if let interval {
            try? floorTimer.arm(afterMilliseconds: interval, repeating: true)
        } else {
            try? floorTimer.disarm()
        }
    }

    private func readReclaimCounters() -> ReclaimCounters? {
        guard config.reclaimSignals else { return nil }
        return ReclaimCounters(vmstat: sampler.vmstatValues())
    }

    private func checkFloorAndReclaim() {
        guard controller.actual > 0 else { return }
        if let available = sampler.availableBytes(), available < controller.limits.availableFloor {
            applyPressure(.belowFloor(available: available))
        }
        guard let now = readReclaimCounters() else { return }
        defer { reclaimBaseline = now }
        guard let before = reclaimBaseline, controller.actual > 0 else { return }
        if now.oomKills > before.oomKills {
            logger.warning("the kernel's OOM killer killed a process: deflating everything")
            applyPressure(.oomKill)
        } else if now.allocStalls > before.allocStalls || now.directScans > before.directScans {
            applyPressure(.directReclaim)
        }
    }

    // MARK: - Frame reporting

    private func stopFrameReporting(because why: String) {
        guard reserver.reportingFrames else { return }
        reserver.disableFrameReporting()
        nextRescanAt = nil
        let waiting = reserver.pendingBytes
        logger.info("frame reporting off: \(why)", metadata: waiting > 0 ? ["held-until-grace-ends": "\(HumanBytes.format(waiting))"] : [:])
    }

    private func frameTimerFired() {
        let now = clock.milliseconds
        let expired = reserver.releaseExpired()
        if expired > 0 {
            logger.warning("the host did not acknowledge a deflate within \(RegionReserver.releaseGraceMilliseconds) ms; released \(HumanBytes.format(expired)) anyway")
        }
        if let at = nextRescanAt, at <= now, reserver.reportingFrames {
            let moved = reserver.rescanFrames()
            if moved > 0 { logger.info("rescan: \(moved) balloon pages moved to other frames; reported") }
            nextRescanAt = now + config.frameRescanIntervalMilliseconds
        }
    }

    /// One timer serves both the earliest grace deadline and the next rescan.
    private func rearmFrameTimer() {
        let wanted = [reserver.nextDeadline, reserver.reportingFrames ? nextRescanAt : nil].compactMap { $0 }.min()
        guard wanted != frameTimerAt else { return }
        frameTimerAt = wanted
        if let wanted {
            let now = clock.milliseconds
            try? frameTimer.arm(afterMilliseconds: max(1, wanted > now ? wanted - now : 1))
        } else {
            try? frameTimer.disarm()
        }
    }

    /// At shutdown, memory the host has not finished freeing is given a
    /// moment: serve the connection until the acks arrive or the grace ends.
    private func waitForFrameAcks() {
        guard reserver.pendingBytes > 0, let deadline = reserver.nextDeadline else { return }
        while reserver.pendingBytes > 0, connection != nil, clock.milliseconds < deadline {
            guard let ready = try? epoll.wait(timeoutMilliseconds: 100) else { break }
            for (token, events) in ready where token == Token.connection.rawValue { serviceConnection(events) }
        }
    }

    private func queryJSON() -> JSON {
        let limits = controller.limits
        let reason: JSON = controller.reason.map { ["code": .string($0.code), "desc": .string($0.desc)] } ?? .null
        return [
            "target": .uint(controller.target), "effective-target": .uint(controller.effectiveTarget),
            "actual": .uint(controller.actual), "state": .string(controller.state.rawValue),
            "limits": [
                "memory-total": .uint(limits.memoryTotal), "max-balloon": .uint(limits.maxBalloon),
                "mem-available-floor": .uint(limits.availableFloor), "chunk-size": .uint(limits.chunkSize),
            ],
            "reason": reason,
            "pressure": pressureJSON(),
        ]
    }

    private func pressureJSON() -> JSON {
        let now = clock.milliseconds
        var members: [(String, JSON)] = [
            ("state", .string(controller.quietUntil.map { $0 > now } == true ? "backoff" : "calm")),
            ("ceiling", controller.pressureCeiling.map { .uint($0) } ?? .null),
            ("quiet-for-ms", controller.quietUntil.map { .uint($0 > now ? $0 - now : 0) } ?? .null),
            ("deflated-total", .uint(controller.pressureDeflatedBytes)),
        ]
        if let last = controller.lastDeflate {
            var fields: [(String, JSON)] = [("bytes", .uint(last.bytes)), ("reason", .string(last.reason.name)), ("ago-ms", .uint(now - last.at))]
            if let times = lastDeflateTimes { fields += times.fields }
            members.append(("last-deflate", .object(fields)))
        } else {
            members.append(("last-deflate", .null))
        }
        return .object(members)
    }
}

public struct DaemonError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension Logger.Level {
    public init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}

/// When a pressure deflate happened, for DEFLATED and `query` (guest
/// CLOCK_MONOTONIC µs): the signal seen, the first chunk (or part) back with
/// the kernel, all of it back. No first return when nothing was released in
/// the step itself (a holder the OOM killer took; memory that waits for the
/// host's frame acknowledgement).
struct DeflateTimes {
    var signalAt: UInt64
    var firstReturnedAt: UInt64?
    var deflatedAt: UInt64

    var fields: [(String, JSON)] {
        [("signal-at", .uint(signalAt))] + (firstReturnedAt.map { [("first-returned-at", JSON.uint($0))] } ?? [])
            + [("deflated-at", .uint(deflatedAt))]
    }
}

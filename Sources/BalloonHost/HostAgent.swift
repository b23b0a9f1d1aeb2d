// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonPolicy
import BalloonProtocol
import BalloonService
import BalloonSystem

/// Why balloon-hostd cannot start.
package enum AgentError: Error, CustomStringConvertible {
    case config(ConfigError)
    case host(HostError)
    package var description: String {
        switch self {
        case let .config(e): e.description
        case let .host(e): e.description
        }
    }
}

/// balloon-hostd: the shared loop (`ServeLoop`) with one peer per guest —
/// from `GuestDirectory=`'s files and from discovered sockets — a policy
/// round every interval, each guest's STATS fed to the policy's fast path,
/// SIGHUP reload (HostAgentReload.swift) and the policy commands.
package final class HostAgent {
    let loop: ServeLoop
    var setup: HostdSetup
    let configPath: String
    let configRequired: Bool
    var policy: any HostPolicy
    /// What `policy` was made with: `HostReserve=` resolved against the total it sees.
    var policySettings: PolicySettings
    let policyTimer: TimerDescriptor
    let sampler = HostSampler()
    var host: HostSample
    var discovery: DiscoveryWatch?
    /// Discovered guests by name (a file of the same name wins).
    var discovered: [String: DiscoveredGuest] = [:]
    /// `set-guest-policy` overrides, until the next reload.
    var policyOverrides: [String: GuestPolicy] = [:]
    var rounds: UInt64 = 0
    var targetsSet: UInt64 = 0
    /// The `/metrics` endpoint and its counters (MetricsServer.swift, MetricsSnapshot.swift).
    var metrics: MetricsServer?
    var metricsTotals = MetricsTotals()
    let log: (String) -> Void
    /// systemd (Type=notify): READY, STATUS, RELOADING, STOPPING, WATCHDOG (HostAgentService.swift).
    let notifier: ServiceNotifier
    let watchdogTimer: TimerDescriptor
    var lastStatus = ""

    /// Reads the configuration and listens on its control socket.
    package init(
        configPath: String, required: Bool, notifier: ServiceNotifier = NoServiceNotifier(), log: @escaping (String) -> Void
    ) throws(AgentError) {
        do { setup = try HostdLoader.load(path: configPath, required: required) } catch { throw .config(error) }
        self.configPath = configPath
        configRequired = required
        self.log = log
        self.notifier = notifier
        var settings = ServeLoop.Settings(controlPath: setup.config.control)
        settings.handleSignals = true
        settings.reloadOnHangup = true
        settings.log = log
        if let name = setup.config.controlGroup {
            let gid: UInt32?
            do { gid = try ProcessControl.groupID(named: name) } catch {
                throw .host(.usage("[Host] ControlGroup: cannot look up group \"\(name)\": \(error)"))
            }
            guard let gid else { throw .host(.usage("\(configPath): [Host] ControlGroup: no group \"\(name)\"")) }
            settings.controlGroup = gid
        }
        do {
            try ProcessControl.makeDirectory(parentOf: setup.config.control)
        } catch {
            throw .host(.usage("cannot create the control socket's directory: \(error)"))
        }
        do { loop = try ServeLoop(settings: settings) } catch { throw .host(error) }
        host = sampler.machine(at: loop.clock())
        policySettings = Self.settings(setup.config, machine: host)
        policy = makePolicy(policySettings)
        do {
            policyTimer = try TimerDescriptor()
            try loop.epoll.add(policyTimer.descriptor, events: .readable, token: ServeLoop.token(.policy))
            watchdogTimer = try TimerDescriptor()
            try loop.epoll.add(watchdogTimer.descriptor, events: .readable, token: ServeLoop.token(.watchdog))
        } catch { throw .host(.io(error)) }
        loop.agent = self
        armPolicyTimer()
        for name in setup.guests.keys.sorted() { addGuest(name) }
        startDiscovery()
        host = sampleHost()
        startMetrics()
        armWatchdog()
    }

    /// Runs until SIGINT/SIGTERM.
    package func run() throws(HostError) {
        log("balloon-hostd \(BalloondVersion.current): \(setup.guests.count) configured guests, policy \(policy.mode.rawValue) every \(HostFormat.seconds(policy.interval.seconds)), control \(setup.config.control)")
        defer { metrics?.close() }
        // The control socket listens and the guests are loaded (they connect
        // as the loop starts; STATUS= follows them).
        updateStatus()
        notifier.ready()
        try loop.run()
    }

    /// Stops a running agent (from another thread, as `ServeLoop.stop`).
    package func stop() { loop.stop() }

    func armPolicyTimer() {
        do { try policyTimer.arm(after: policy.interval, repeating: true) } catch {
            log("cannot arm the policy timer: \(error); no policy rounds")
        }
    }

    // MARK: - Guests

    /// A peer for guest `name`: its file's settings, or a discovered socket's
    /// defaults (with a libvirt guest's RAM file when one was found).
    func addGuest(_ name: String, discovered found: DiscoveredGuest? = nil) {
        let socket = found?.socket
        let config = setup.guests[name] ?? GuestConfig()
        let address: GuestAddress
        if let socket {
            address = .unix(path: socket)
        } else {
            switch config.channel {
            case let .unix(path)?: address = .unix(path: path)
            case let .vsock(cid, port)?: address = .vsock(cid: cid, port: port)
            case let .hybridVsock(path, port)?: address = .hybridVsock(path: path, port: port)
            case nil: return
            }
        }
        var options = ServeOptions(guest: address, controlPath: setup.config.control)
        options.desiredTarget = config.target
        options.statsInterval = setup.config.statsInterval
        options.log = { [log] in log("\(name): " + $0) }
        options.freeMemoryReporting = config.freeMemoryReporting
        options.populateOnDeflate = config.populateOnDeflate != .no
        options.populateBelowTargetOnly = config.populateOnDeflate == .belowTarget
        var frames: (ledger: FrameLedger, puncher: BackendPuncher)?
        if let backend = config.memoryBackend {
            do {
                let puncher = try BackendPuncher(path: backend, ramSize: config.ramSize)
                let map = try RamMap.parse(config.ramMap, ramSize: puncher.ramSize)
                frames = (FrameLedger(map: map, punchRate: FrameLedger.defaultPunchRate(for: map), now: loop.clock()), puncher)
            } catch {
                log("\(name): \(setup.guestFiles[name] ?? name): \(error); guest not added")
                return
            }
        } else if let found, let ram = found.ramFile {
            frames = libvirtFrames(name, ram: ram, socket: found.socket)
        }
        do {
            let peer = try loop.addPeer(name: name, options: options, frames: frames)
            peer.agent.source = socket == nil ? "config" : "discovered"
            peer.agent.ramSize = config.ramSize ?? frames?.puncher.ramSize
            refreshLimits(peer)
            if let path = config.qmp { peer.startQMP(path: path) }
            log("\(name): added (\(address.channelDescription)\(socket == nil ? "" : ", discovered"))")
        } catch {
            log("\(name): \(error); guest not added")
        }
    }

    /// A libvirt guest's RAM file as its backend; nil (logged: the guest is
    /// added without one) when a check fails or the map is not known.
    func libvirtFrames(_ name: String, ram: String, socket: String) -> (ledger: FrameLedger, puncher: BackendPuncher)? {
        do {
            let puncher = try BackendPuncher(file: try DiscoveryWatch.openLibvirtRam(ram, socket: socket))
            guard let spec = DiscoveryScan.libvirtRamMap(setup.config.libvirtRamMap, size: puncher.ramSize) else {
                log("\(name): RAM file \(ram) is \(HumanBytes.format(puncher.ramSize)): pc and q35 map it differently; set [Discovery] LibvirtRamMap=pc or q35 to free its memory")
                return nil
            }
            let map = try RamMap.parse(spec, ramSize: puncher.ramSize)
            log("\(name): RAM file \(ram) (\(HumanBytes.format(puncher.ramSize)), map \(spec))")
            return (FrameLedger(map: map, punchRate: FrameLedger.defaultPunchRate(for: map), now: loop.clock()), puncher)
        } catch {
            log("\(name): \(error); no memory backend")
            return nil
        }
    }

    func removeGuest(_ name: String, reason: String) {
        guard let peer = loop.peersByName[name] else { return }
        loop.removePeer(peer, reason: reason)
        log("\(name): removed (\(reason))")
    }

    /// Min/Max resolved against the guest's RAM, Shares, and its policy.
    func refreshLimits(_ peer: GuestPeer) {
        let config = setup.guests[peer.name] ?? GuestConfig()
        let ram = peer.ramSize
        peer.agent.limits = GuestLimits(
            min: Swift.min(config.min.resolve(memTotal: ram), ram), max: Swift.min(config.max.resolve(memTotal: ram), ram),
            shares: config.shares, policy: policyOverrides[peer.name] ?? config.policy)
    }

    // MARK: - Policy

    /// The policy's settings for `config`. A percentage `HostReserve=` is of the
    /// total the policy sees: the `HostMemory=` budget when there is one (a
    /// reserve of MemTotal's 20% would exceed a small budget and keep every
    /// guest squeezed), else the machine's MemTotal.
    static func settings(_ config: HostdConfig, machine: HostSample) -> PolicySettings {
        config.policySettings(hostTotal: config.hostMemory ?? machine.total)
    }

    /// The host: the machine, or the `HostMemory=` budget less what is behind the guests.
    func sampleHost() -> HostSample {
        let now = loop.clock()
        guard let budget = setup.config.hostMemory else { return sampler.machine(at: now) }
        let behind = loop.peers.values.map { peer -> UInt64 in
            if let puncher = peer.puncher, let status = try? puncher.file.status() { return status.allocatedBytes }
            let ram = peer.ramSize
            let held = peer.agent.actual ?? 0
            return ram > held ? ram - held : 0
        }
        return HostBudget.sample(budget: budget, behindGuests: behind, at: now)
    }

    func policyRound() {
        policyTimer.acknowledge()
        host = sampleHost()
        rounds += 1
        let peers = loop.peers.values.sorted { $0.name < $1.name }
        for peer in peers { refreshLimits(peer) }
        apply(policy.round(host: host, guests: peers.map(\.policyState), now: loop.clock()))
    }

    /// A guest's new STATS sample: the policy's fast path.
    func sampled(_ peer: GuestPeer) {
        refreshLimits(peer)
        apply(policy.sampled(guest: peer.policyState, host: host, now: loop.clock()))
    }

    /// A guest's balloond gave memory back under pressure (`DEFLATED`): the
    /// policy's burst path, on the host as of the last round.
    func deflated(_ peer: GuestPeer) {
        let peers = loop.peers.values.sorted { $0.name < $1.name }
        apply(policy.deflated(guest: peer.policyState, guests: peers.map(\.policyState), host: host, now: loop.clock()))
    }

    /// A guest's balloon grew: the policy may stop it during another's burst.
    func grew(_ peer: GuestPeer) {
        apply(policy.grew(guest: peer.policyState, host: host, now: loop.clock()))
    }

    /// Sets the policy's targets on the guests it may move (Policy=auto, connected).
    func apply(_ changes: [TargetChange]) {
        for change in changes {
            guard let peer = loop.peersByName[change.guest], peer.agent.limits.policy == .auto,
                peer.link?.synced == true, peer.status.desiredTarget != change.target
            else { continue }
            // The operator's trace of the policy (journald): each move and why.
            let from = peer.status.desiredTarget.map(HumanBytes.format) ?? "none"
            log("\(peer.name): target \(from) -> \(HumanBytes.format(change.target)) (\(change.reason))")
            peer.apply(target: change.target, reason: change.reason)
            targetsSet += 1
        }
    }

    /// policy-status and set-guest-policy.
    func answer(_ command: AgentCommand) -> Result<JSON, ProtocolError> {
        switch command {
        case .policyStatus:
            host = sampleHost()
            return .success(PolicyStatusReply(
                mode: policy.mode.rawValue, interval: policy.interval, hostTotal: host.total, hostAvailable: host.available,
                hostReserve: policySettings.hostReserve, budget: setup.config.hostMemory != nil,
                rounds: rounds, targetsSet: targetsSet).json)
        case let .setGuestPolicy(name, value):
            guard let peer = loop.peersByName[name] else { return .failure(AgentCommand.noSuchGuest(name)) }
            policyOverrides[name] = GuestPolicy(rawValue: value.rawValue) ?? .manual
            refreshLimits(peer)
            log("\(name): policy \(value.rawValue) (set through the control socket, until the next reload)")
            return .success(peer.summary.json)
        case .selectGuest, .listGuests, .guestStatus:
            return .failure(ProtocolError(.genericError, "answered by the loop"))
        }
    }
}

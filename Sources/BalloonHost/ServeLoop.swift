// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import Glibc

// The shared loop of `balloonctl serve` and balloon-hostd: one epoll loop,
// one thread, for every guest (`GuestPeer`: its connection and reconnect
// timer), the control listener and its clients (ServeClients.swift), a
// housekeeping tick, SIGINT/SIGTERM (and for the agent SIGHUP), and the
// agent's policy timer and discovery watch (HostAgent). `balloonctl serve`
// is the one-guest form: `init(options:frames:clock:)`.
//
// Nothing in it blocks except the connect to a guest (immediate for unix
// sockets; the hybrid vsock handshake waits at most `connectTimeout`) and
// the fallocate calls.

public final class ServeLoop {
    /// What the loop itself needs: where to listen and the client limits.
    public struct Settings {
        public var controlPath: String
        public var clientOutboxLimit = 1 << 20
        public var maxClients = 64
        /// A client holding its slot without a request in time, or idle with
        /// no guest selected, is dropped (ControlClientTimeouts.swift).
        public var clientTimeouts = ControlClientTimeouts()
        /// `[Host] ControlGroup=`: this group may use the control socket too (mode 0660).
        public var controlGroup: UInt32?
        public var handleSignals = false
        /// With `handleSignals`: SIGHUP reloads (balloon-hostd) instead of ending the process.
        public var reloadOnHangup = false
        public var log: (String) -> Void = { _ in }

        public init(controlPath: String) { self.controlPath = controlPath }

        init(_ options: ServeOptions) {
            controlPath = options.controlPath
            clientOutboxLimit = options.clientOutboxLimit
            maxClients = options.maxClients
            handleSignals = options.handleSignals
            log = options.log
        }
    }

    let settings: Settings
    let clock: () -> Duration
    let epoll: Epoll
    let listener: Descriptor
    let tickTimer: TimerDescriptor
    let stopEvent: EventDescriptor
    var signals: SignalDescriptor?
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

    enum Kind: UInt64 {
        case listener = 1, guest, reconnect, tick, signal, stop, client, policy, discovery
        // balloon-hostd's /metrics endpoint (MetricsServer.swift).
        case metricsListener, metricsClient, metricsTimer
        // A guest's QMP socket (QMPServer.swift): id = peer; a client's = peer << 24 | client.
        case qmpListener, qmpClient, qmpTimer
        // balloon-hostd's systemd watchdog (HostAgentService.swift).
        case watchdog
    }
    static func token(_ kind: Kind, _ id: UInt64 = 0) -> UInt64 { id << 8 | kind.rawValue }
    /// A guest connection's token: the peer and the connection's generation,
    /// so a stale event of a closed connection is ignored.
    static func guestToken(peer: UInt64, generation: UInt64) -> UInt64 { token(.guest, peer << 24 | generation & 0xFF_FFFF) }
    /// How often guest request timeouts are checked.
    static let tick: Duration = .milliseconds(250)

    var peers: [UInt64: GuestPeer] = [:]
    var peersByName: [String: GuestPeer] = [:]
    var nextPeerID: UInt64 = 1
    /// `balloonctl serve`'s guest: every control client talks to it.
    var onlyPeer: GuestPeer?
    var clients: [UInt64: Client] = [:]
    var nextClientID: UInt64 = 1
    /// Dropped for not reading their answers, or by `clientTimeouts`.
    var clientsDropped: UInt64 = 0
    /// Refused for the client limit; logged at most once a second (a flood
    /// of connections must not become a flood of log lines).
    var clientsRefused: UInt64 = 0
    var refusalLogged: Duration?
    var stopping = false
    /// balloon-hostd's policy, config and discovery, when this is the agent.
    weak var agent: HostAgent?

    /// `balloonctl serve`: one guest. `frames`: the ledger and puncher when
    /// a memory backend was given. `clock`: the monotonic clock.
    public convenience init(
        options: ServeOptions, frames: (ledger: FrameLedger, puncher: BackendPuncher)? = nil,
        clock: @escaping () -> Duration = SystemClock.monotonic
    ) throws(HostError) {
        try self.init(settings: Settings(options), clock: clock)
        onlyPeer = try addPeer(name: options.guest.description, options: options, frames: frames)
        if let path = options.qmpPath, let peer = onlyPeer { peer.qmp = try QMPServer(path: path, peer: peer) }
    }

    /// Listens on the control socket, with no guest yet (`addPeer`).
    public init(settings: Settings, clock: @escaping () -> Duration = SystemClock.monotonic) throws(HostError) {
        self.settings = settings
        self.clock = clock
        do {
            epoll = try Epoll()
            tickTimer = try TimerDescriptor()
            stopEvent = try EventDescriptor()
        } catch { throw .io(error) }
        do { listener = try StreamIO.listenUnixPrivate(path: settings.controlPath) } catch {
            throw .usage("cannot listen on the control socket \(settings.controlPath): \(error)")
        }
        if let gid = settings.controlGroup {
            do { try StreamIO.shareWithGroup(path: settings.controlPath, gid: gid) } catch {
                listener.close()
                throw .usage("cannot open the control socket \(settings.controlPath) to group \(gid): \(error)")
            }
        }
        do {
            if settings.handleSignals {
                let s = try SignalDescriptor(signals: [SIGINT, SIGTERM] + (settings.reloadOnHangup ? [SIGHUP] : []))
                signals = s
                try epoll.add(s.descriptor, events: .readable, token: Self.token(.signal))
            }
            try epoll.add(listener, events: .readable, token: Self.token(.listener))
            try epoll.add(tickTimer.descriptor, events: .readable, token: Self.token(.tick))
            try epoll.add(stopEvent.descriptor, events: .readable, token: Self.token(.stop))
            try tickTimer.arm(after: Self.tick, repeating: true)
        } catch { throw .io(error) }
    }

    deinit { buffer.deallocate() }

    func log(_ line: String) { settings.log(line) }

    /// Asks a running loop to stop (safe from another thread: an eventfd write).
    public func stop() { stopEvent.signal() }

    /// The counters `serve-status` reports (serve's one guest).
    public var currentStatus: ServeStatus { onlyPeer?.currentStatus ?? ServeStatus() }

    /// A new guest; it connects when the loop runs (or now, if it is running).
    @discardableResult
    func addPeer(name: String, options: ServeOptions, frames: (ledger: FrameLedger, puncher: BackendPuncher)?) throws(HostError) -> GuestPeer {
        let peer = try GuestPeer(id: nextPeerID, name: name, options: options, frames: frames, loop: self)
        nextPeerID += 1
        peers[peer.id] = peer
        peersByName[name] = peer
        if running { peer.connectGuest() }
        return peer
    }

    /// Ends a guest's session and forgets it; clients that selected it are told.
    func removePeer(_ peer: GuestPeer, reason: String) {
        peer.close(reason: reason)
        peers[peer.id] = nil
        if peersByName[peer.name] === peer { peersByName[peer.name] = nil }
    }

    var running = false
    /// Peers with backend ranges to allocate again (GuestPeer.populateSlice):
    /// one slice each between rounds of events, so events never wait long.
    var populating = Set<UInt64>()

    /// Runs until SIGINT/SIGTERM (with `handleSignals`) or `stop()`. Then
    /// closes everything and removes the control socket.
    public func run() throws(HostError) {
        // Writes to a peer that hung up fail with EPIPE (handled per peer),
        // never a SIGPIPE that ends the loop.
        ProcessControl.ignoreBrokenPipe()
        if let peer = onlyPeer {
            log("serving \(peer.options.guest) on \(settings.controlPath)"
                + (peer.puncher.map { " (memory backend \($0.file.path), guest RAM \(HumanBytes.format($0.ramSize)))" } ?? ""))
        }
        running = true
        for peer in peers.values.sorted(by: { $0.id < $1.id }) { peer.connectGuest() }
        while !stopping {
            let events: [(token: UInt64, events: EpollEvents)]
            do { events = try epoll.wait(timeout: populating.isEmpty ? nil : .zero, max: 64) } catch { throw .io(error) }
            for (token, ev) in events where !stopping {
                dispatch(token, ev)
            }
            for id in populating where !stopping {
                if peers[id]?.populateSlice() != true { populating.remove(id) }
            }
        }
        shutdown()
    }

    func dispatch(_ token: UInt64, _ ev: EpollEvents) {
        guard let kind = Kind(rawValue: token & 0xFF) else { return }
        let id = token >> 8
        switch kind {
        case .listener: acceptClients()
        case .guest:
            guard let peer = peers[id >> 24], let link = peer.link, link.generation & 0xFF_FFFF == id & 0xFF_FFFF else { return }
            if ev.contains(.writable) { peer.flushGuest() }
            if peer.link === link, !ev.isDisjoint(with: [.readable, .hangup, .error]) { peer.guestReadable() }
        case .reconnect:
            guard let peer = peers[id] else { return }
            peer.reconnectTimer.acknowledge()
            if peer.link == nil { peer.connectGuest() }
        case .tick:
            tickTimer.acknowledge()
            let now = clock()
            for peer in Array(peers.values) { peer.checkTimeouts(now: now) }
            dropStalledClients(now: now)
            agent?.updateStatus()
        case .signal:
            while let sig = signals?.next() {
                if sig == SIGHUP {
                    if let agent { agent.reload() } else { log("SIGHUP ignored (nothing to reload)") }
                    continue
                }
                log("signal \(sig): stopping")
                stopping = true
            }
        case .stop:
            stopEvent.acknowledge()
            stopping = true
        case .client:
            guard let client = clients[id] else { return }
            if ev.contains(.writable) { flushClient(client) }
            if clients[id] != nil, !ev.isDisjoint(with: [.readable, .hangup, .error]) { clientReadable(client) }
        case .policy:
            agent?.policyRound()
        case .discovery:
            agent?.discoveryEvent()
        case .metricsListener: agent?.metrics?.acceptClients()
        case .metricsClient: agent?.metrics?.clientEvent(id, ev)
        case .metricsTimer: agent?.metrics?.timerFired()
        case .qmpListener: peers[id]?.qmp?.acceptClients()
        case .qmpClient: peers[id >> 24]?.qmp?.clientEvent(id & 0xFF_FFFF, ev)
        case .qmpTimer: peers[id]?.qmp?.timerFired()
        case .watchdog:
            agent?.watchdogTick()
        }
    }

    /// A guest's new STATS sample (the agent's fast path).
    func sampled(_ peer: GuestPeer) { agent?.sampled(peer) }
    func deflated(_ peer: GuestPeer) { agent?.deflated(peer) }
    func grew(_ peer: GuestPeer) { agent?.grew(peer) }

    func shutdown() {
        agent?.notifier.stopping()
        for peer in peers.values { peer.close(reason: agent == nil ? "serve is stopping" : "balloon-hostd is stopping") }
        for client in clients.values { drop(client, reason: nil) }
        epoll.remove(listener)
        listener.close()
        // Already gone (removed by hand, or a newer serve's): nothing to clean.
        try? ProcessControl.removeFile(settings.controlPath)
        log("stopped")
    }
}

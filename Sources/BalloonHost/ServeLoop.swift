// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import Glibc

// `balloonctl serve`: one long-running session with a guest, shared with
// other balloonctl calls through a control socket that speaks the same
// protocol (so `GuestSession` works against it unchanged), and, with a
// memory backend, freeing the guest frames the balloon holds.
//
// One epoll loop, one thread: the guest connection, the control listener,
// the control clients, a reconnect timer, a housekeeping tick, and (for the
// CLI) SIGINT/SIGTERM. Nothing in it blocks except the connect to the guest
// (immediate for unix sockets; the hybrid vsock handshake waits at most
// `connectTimeout`) and the fallocate calls.

public final class ServeLoop {
    public let options: ServeOptions
    var ledger: FrameLedger?
    let puncher: BackendPuncher?
    let clock: () -> Duration

    let epoll: Epoll
    let listener: Descriptor
    let reconnectTimer: TimerDescriptor
    let tickTimer: TimerDescriptor
    let stopEvent: EventDescriptor
    var signals: SignalDescriptor?
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

    enum Kind: UInt64 { case listener = 1, guest, reconnect, tick, signal, stop, client }
    static func token(_ kind: Kind, _ id: UInt64 = 0) -> UInt64 { id << 8 | kind.rawValue }
    /// How often guest request timeouts are checked.
    static let tick: Duration = .milliseconds(250)

    /// What a reply from the guest is for.
    enum Pending {
        case forward(client: UInt64, id: JSON?, target: UInt64?, previousDesired: UInt64?)
        case frameReporting
        case freeMemoryReporting
        case query
        case setTarget(UInt64)
        case ack(UInt64)
    }

    var link: GuestLink?
    var generation: UInt64 = 0
    var clients: [UInt64: Client] = [:]
    var nextClientID: UInt64 = 1
    var backoff: Duration
    var stopping = false
    var hadSession = false
    var lastConnectError: String?
    var lastRefusalLog: Duration?
    var guestMalformed: UInt64 = 0
    var status = ServeStatus()
    /// The frames held above the desired target at the last report (ServeFreeMemory.swift).
    var freeMemoryShare: UInt64 = 0

    /// Listens on the control socket. `frames`: the ledger and puncher when a
    /// memory backend was given. `clock`: the monotonic clock.
    public init(
        options: ServeOptions, frames: (ledger: FrameLedger, puncher: BackendPuncher)? = nil,
        clock: @escaping () -> Duration = SystemClock.monotonic
    ) throws(HostError) {
        self.options = options
        self.ledger = frames?.ledger
        self.puncher = frames?.puncher
        self.clock = clock
        backoff = options.backoffInitial
        status.desiredTarget = options.desiredTarget
        status.guest = options.guest.description
        status.memoryBackend = frames?.puncher.file.path
        do {
            epoll = try Epoll()
            reconnectTimer = try TimerDescriptor()
            tickTimer = try TimerDescriptor()
            stopEvent = try EventDescriptor()
        } catch { throw .io(error) }
        do { listener = try StreamIO.listenUnixPrivate(path: options.controlPath) } catch {
            throw .usage("cannot listen on the control socket \(options.controlPath): \(error)")
        }
        do {
            if options.handleSignals {
                let s = try SignalDescriptor(signals: [SIGINT, SIGTERM])
                signals = s
                try epoll.add(s.descriptor, events: .readable, token: Self.token(.signal))
            }
            try epoll.add(listener, events: .readable, token: Self.token(.listener))
            try epoll.add(reconnectTimer.descriptor, events: .readable, token: Self.token(.reconnect))
            try epoll.add(tickTimer.descriptor, events: .readable, token: Self.token(.tick))
            try epoll.add(stopEvent.descriptor, events: .readable, token: Self.token(.stop))
            try tickTimer.arm(after: Self.tick, repeating: true)
        } catch { throw .io(error) }
    }

    deinit { buffer.deallocate() }

    /// Asks a running loop to stop (safe from another thread: an eventfd write).
    public func stop() { stopEvent.signal() }

    /// The counters `serve-status` reports.
    public var currentStatus: ServeStatus {
        var s = status
        s.guestConnected = link?.synced ?? false
        s.controlClients = clients.count
        if let ledger {
            s.framesHeld = ledger.heldFrames
            s.bytesHeld = ledger.heldBytes
            s.refused = ledger.refused
        }
        s.malformedLines = guestMalformed
        if let puncher {
            s.bytesFreed = puncher.bytesFreed
            s.punches = puncher.punches
            s.punchFailures = puncher.failures
        }
        return s
    }

    /// Runs until SIGINT/SIGTERM (with `handleSignals`) or `stop()`. Then
    /// closes everything and removes the control socket.
    public func run() throws(HostError) {
        // Writes to a peer that hung up fail with EPIPE (handled per peer),
        // never a SIGPIPE that ends serve.
        ProcessControl.ignoreBrokenPipe()
        options.log("serving \(options.guest) on \(options.controlPath)"
            + (puncher.map { " (memory backend \($0.file.path), guest RAM \(HumanBytes.format($0.ramSize)))" } ?? ""))
        connectGuest()
        while !stopping {
            let events: [(token: UInt64, events: EpollEvents)]
            do { events = try epoll.wait(timeout: nil) } catch { throw .io(error) }
            for (token, ev) in events where !stopping {
                dispatch(token, ev)
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
            guard let link, link.generation == id else { return }
            if ev.contains(.writable) { flushGuest() }
            if self.link === link, !ev.isDisjoint(with: [.readable, .hangup, .error]) { guestReadable() }
        case .reconnect:
            reconnectTimer.acknowledge()
            if link == nil { connectGuest() }
        case .tick:
            tickTimer.acknowledge()
            checkTimeouts()
        case .signal:
            while let sig = signals?.next() {
                options.log("signal \(sig): stopping")
                stopping = true
            }
        case .stop:
            stopEvent.acknowledge()
            stopping = true
        case .client:
            guard let client = clients[id] else { return }
            if ev.contains(.writable) { flushClient(client) }
            if clients[id] != nil, !ev.isDisjoint(with: [.readable, .hangup, .error]) { clientReadable(client) }
        }
    }

    func shutdown() {
        if link != nil { disconnect("serve is stopping", reconnect: false) }
        for client in clients.values { drop(client, reason: nil) }
        epoll.remove(listener)
        listener.close()
        // Already gone (removed by hand, or a newer serve's): nothing to clean.
        try? ProcessControl.removeFile(options.controlPath)
        options.log("stopped")
    }

}

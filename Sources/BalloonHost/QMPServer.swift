// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonProtocol
import BalloonSystem

/// A guest's QMP socket (`[Guest] QMP=PATH`, docs/qmp.md): the part of
/// QEMU's QMP that balloon tooling speaks, for as long as the guest is
/// configured. The dialect is BalloonProtocol's (`QMPSession`, `QMPDevice`,
/// `QMPEventLimiter`); this is its socket side in the shared loop: the
/// listener (0600, and the peer checked as on the control socket), the
/// clients, the event throttle's timer, and `balloon` turned into the
/// guest's target.
final class QMPServer {
    final class Client {
        let id: UInt64
        let connection: LineConnection
        var parser = QMPStreamParser()
        var session = QMPSession()
        init(id: UInt64, fd: Descriptor) {
            self.id = id
            connection = LineConnection(descriptor: fd, peer: "QMP client \(id)")
        }
    }

    static let maxClients = 16

    let path: String
    unowned let peer: GuestPeer
    var loop: ServeLoop { peer.loop }
    let listener: Descriptor
    let timer: TimerDescriptor
    var device = QMPDevice()
    var limiter = QMPEventLimiter()
    var clients: [UInt64: Client] = [:]
    var nextClientID: UInt64 = 1
    /// Refused for the client limit (guest-status `qmp-clients-refused`);
    /// logged at most once a second.
    var refused: UInt64 = 0
    var refusalLogged: Duration?
    /// The logical size last seen; nil until the RAM and balloon are known.
    var lastLogical: UInt64?

    init(path: String, peer: GuestPeer) throws(HostError) {
        self.path = path
        self.peer = peer
        do { listener = try StreamIO.listenUnixPrivate(path: path) } catch {
            throw .usage("cannot listen on the QMP socket \(path): \(error)")
        }
        do {
            timer = try TimerDescriptor()
            try peer.loop.epoll.add(listener, events: .readable, token: ServeLoop.token(.qmpListener, peer.id))
            try peer.loop.epoll.add(timer.descriptor, events: .readable, token: ServeLoop.token(.qmpTimer, peer.id))
        } catch {
            listener.close()
            try? ProcessControl.removeFile(path)
            throw .io(error)
        }
    }

    func log(_ line: String) { peer.log(line) }

    /// What QMP's commands see of the guest now.
    var view: QMPGuestView {
        QMPGuestView(connected: peer.link?.synced ?? false, ramSize: peer.ramSize, balloon: peer.agent.actual ?? 0)
    }

    func acceptClients() {
        while true {
            let fd: Descriptor?
            do { fd = try StreamSocket.accept(listener) } catch {
                log("accept on the QMP socket \(path) failed: \(error)")
                return
            }
            guard let fd else { return }
            let who: PeerCredentials
            do { who = try StreamSocket.peerCredentials(fd) } catch {
                log("QMP client refused: \(error)")
                fd.close()
                continue
            }
            let owner = ProcessControl.effectiveUserID
            guard ServeLoop.mayControl(who, owner: owner) else {
                log("QMP client refused: \(who) is neither root nor uid \(owner)")
                fd.close()
                continue
            }
            guard clients.count < Self.maxClients else {
                refused += 1
                let now = loop.clock()
                if refusalLogged.map({ now - $0 >= .seconds(1) }) ?? true {
                    refusalLogged = now
                    log("QMP client refused: \(Self.maxClients) already connected (\(refused) refused so far)")
                }
                fd.close()
                continue
            }
            let client = Client(id: nextClientID, fd: fd)
            nextClientID += 1
            do {
                try client.connection.register(in: loop.epoll, token: ServeLoop.token(.qmpClient, peer.id << 24 | client.id & 0xFF_FFFF), events: .readable)
            } catch {
                fd.close()
                continue
            }
            clients[client.id] = client
            log("QMP client \(client.id) connected: \(who)")
            send(client, client.session.version.greeting)
        }
    }

    func clientEvent(_ id: UInt64, _ ev: EpollEvents) {
        guard let client = clients[id] else { return }
        if ev.contains(.writable) {
            do { try client.connection.flush() } catch { return drop(client) }
        }
        guard clients[id] != nil, !ev.isDisjoint(with: [.readable, .hangup, .error]) else { return }
        let n: Int?
        do { n = try client.connection.descriptor.read(into: loop.buffer) } catch { return drop(client) }
        guard let n else { return }
        guard n > 0 else { return drop(client) }
        // Commands run in order, one at a time, as QEMU runs them without oob.
        for item in client.parser.feed(UnsafeRawBufferPointer(rebasing: loop.buffer[..<n])) {
            guard clients[id] != nil else { return }
            let (reply, action) = client.session.handle(item, device: &device, guest: view)
            send(client, reply)
            if case let .setBalloon(bytes)? = action {
                log("QMP client \(id): balloon \(HumanBytes.format(bytes)) (logical size \(HumanBytes.format(peer.ramSize - bytes)))")
                peer.apply(target: bytes, reason: "set through QMP")
            }
        }
    }

    func send(_ client: Client, _ message: JSON) {
        do {
            guard try client.connection.send(QMPWire.encode(message)) else {
                log("QMP client \(client.id) dropped: not reading")
                return drop(client)
            }
        } catch {
            drop(client)
        }
    }

    func drop(_ client: Client) {
        guard clients.removeValue(forKey: client.id) != nil else { return }
        client.connection.unregister()
        client.connection.descriptor.close()
    }

    // MARK: - What the guest reports

    /// The balloon or the RAM size may have changed: BALLOON_CHANGE when
    /// the logical size did, throttled as QEMU throttles it.
    func guestChanged() {
        let v = view
        guard v.ramSize > 0, peer.agent.actual != nil else { return }
        let logical = v.logicalSize
        defer { lastLogical = logical }
        guard let last = lastLogical, last != logical else { return }
        let now = loop.clock()
        if let event = limiter.offer(QMPEvent.balloonChange(actual: logical, at: SystemClock.realtime()), now: now) {
            broadcast(event)
        }
        armTimer(now: now)
    }

    /// A STATS sample: QEMU's polled stats, while polling is on.
    func observe(_ stats: StatsReply) {
        device.observe(stats.stats, wallSeconds: SystemClock.realtime().components.seconds)
    }

    func timerFired() {
        _ = timer.acknowledge()
        let now = loop.clock()
        if let event = limiter.expire(now: now) { broadcast(event) }
        armTimer(now: now)
    }

    func armTimer(now: Duration) {
        guard let deadline = limiter.deadline else { return }
        // timerfd treats zero as "disarm": at least a nanosecond.
        do { try timer.arm(after: max(deadline - now, .nanoseconds(1))) } catch {
            log("cannot arm the QMP event timer: \(error)")
        }
    }

    /// Events go to clients past negotiation only, as in QEMU.
    func broadcast(_ event: JSON) {
        for client in clients.values.sorted(by: { $0.id < $1.id }) where client.session.commandMode { send(client, event) }
    }

    func close() {
        for client in Array(clients.values) { drop(client) }
        loop.epoll.remove(listener)
        listener.close()
        loop.epoll.remove(timer.descriptor)
        timer.descriptor.close()
        try? ProcessControl.removeFile(path)
    }
}

extension GuestPeer {
    /// Starts serving QMP on `path`; a failure is logged and the guest runs without it.
    func startQMP(path: String) {
        do {
            qmp = try QMPServer(path: path, peer: self)
            log("QMP on \(path)")
        } catch {
            log("\(error); no QMP socket")
        }
    }
}

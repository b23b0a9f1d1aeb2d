// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonProtocol
import BalloonSystem

// The control clients: the control socket speaks the guest's protocol. The
// loop answers sync, serve-status and the agent's commands (AgentCommand)
// itself, forwards the rest to the client's guest (serve's only guest, or
// the one `select-guest` named) and sends each client its guest's events.
// Each client has its own outbox.

extension ServeLoop {
    final class Client {
        let id: UInt64
        let connection: LineConnection
        var fd: Descriptor { connection.descriptor }
        /// The peer whose events it gets and to which its v1 commands go.
        var selected: UInt64?
        /// Its requests' timing, for `Settings.clientTimeouts`.
        var activity: ControlClientTimeouts.Activity
        init(id: UInt64, fd: Descriptor, outboxLimit: Int, connected: Duration) {
            self.id = id
            connection = LineConnection(descriptor: fd, peer: "control client \(id)", maxOutboxBytes: outboxLimit)
            activity = .init(connected: connected)
        }
    }

    func acceptClients() {
        while true {
            let fd: Descriptor?
            do { fd = try StreamSocket.accept(listener) } catch {
                log("accept on \(settings.controlPath) failed: \(error)")
                return
            }
            guard let fd else { return }
            // The socket is created 0600 (0660 with ControlGroup=), so only
            // root, this user (and that group) can connect; checking the
            // peer too keeps that true if someone loosens the mode, and
            // names who connected in the log.
            let who: PeerCredentials
            var groups: [UInt32] = []
            do {
                who = try StreamSocket.peerCredentials(fd)
                if let group = settings.controlGroup, who.gid != group { groups = try StreamSocket.peerGroups(fd) }
            } catch {
                log("control client refused: \(error)")
                fd.close()
                continue
            }
            let owner = ProcessControl.effectiveUserID
            guard Self.mayControl(who, owner: owner, group: settings.controlGroup, peerGroups: groups) else {
                log("control client refused: \(who) is neither root nor uid \(owner)"
                    + (settings.controlGroup.map { " nor in group \($0)" } ?? ""))
                fd.close()
                continue
            }
            guard clients.count < settings.maxClients else {
                clientsRefused += 1
                let now = clock()
                if refusalLogged.map({ now - $0 >= .seconds(1) }) ?? true {
                    refusalLogged = now
                    log("control client refused: \(settings.maxClients) already connected (\(clientsRefused) refused so far)")
                }
                fd.close()
                continue
            }
            let client = Client(id: nextClientID, fd: fd, outboxLimit: settings.clientOutboxLimit, connected: clock())
            client.selected = onlyPeer?.id
            nextClientID += 1
            do { try client.connection.register(in: epoll, token: Self.token(.client, client.id), events: .readable) } catch {
                fd.close()
                continue
            }
            clients[client.id] = client
            log("control client \(client.id) connected: \(who)")
        }
    }

    /// Who may use the control socket: root, the user the agent runs as and,
    /// with `ControlGroup=`, members of that group (primary or supplementary).
    static func mayControl(_ peer: PeerCredentials, owner: UInt32, group: UInt32? = nil, peerGroups: [UInt32] = []) -> Bool {
        if peer.uid == 0 || peer.uid == owner { return true }
        guard let group else { return false }
        return peer.gid == group || peerGroups.contains(group)
    }

    func clientReadable(_ client: Client) {
        let items: [LineFramer.Item]
        do {
            switch try client.connection.readAvailable(into: buffer) {
            case .wouldBlock: return
            case .closed: return drop(client, reason: nil)
            case let .items(read): items = read
            }
        } catch {
            return drop(client, reason: nil)
        }
        client.activity.read(
            at: clock(), completedLine: items.contains { if case .line = $0 { true } else { false } },
            openLine: client.connection.framer.isMidLine)
        for item in items {
            guard clients[client.id] != nil else { return }
            switch item {
            case .resync:
                continue
            case let .tooLong(limit):
                send(client, Response(id: nil, result: .failure(ProtocolError(.lineTooLong, "line longer than \(limit) bytes dropped"))))
            case let .line(line):
                switch Result(catching: { () throws(ProtocolError) -> Message in try Message.decode(line) }) {
                case let .failure(error):
                    send(client, Response(id: nil, result: .failure(error)))
                case let .success(.request(request)):
                    if AgentCommand.names(request) {
                        agentRequest(client, request)
                    } else {
                        clientRequest(client, request)
                    }
                case .success:
                    send(client, Response(id: nil, result: .failure(ProtocolError(.malformedMessage, "expected a request"))))
                }
            }
        }
    }

    func clientRequest(_ client: Client, _ request: Request) {
        func fail(_ error: ProtocolError) {
            send(client, Response(id: request.id, result: .failure(error)))
        }
        let command: Command
        do { command = try Command(request, scope: .serveControl) } catch { return fail(error) }
        if case let .sync(id) = command {
            return enqueue(client, [LineFramer.resyncByte] + Message.response(Response(id: request.id, result: .success(id))).encoded())
        }
        guard let peer = client.selected.flatMap({ peers[$0] }) else {
            return fail(ProtocolError(
                .genericError,
                client.selected == nil
                    ? "no guest selected: send select-guest first (balloonctl --guest NAME; balloonctl list shows the guests)"
                    : "the selected guest was removed"))
        }
        switch command {
        case .sync:
            return
        case .serveStatus:
            send(client, Response(id: request.id, reply: peer.currentStatus))
        case .framesAck, .setFrameReporting:
            fail(ProtocolError(.invalidParameter, "\(command.name.rawValue) is owned by \(agent == nil ? "balloonctl serve" : "balloon-hostd") (it enables frame reporting when it has a memory backend)"))
        case .info, .setTarget, .query, .stats, .setStatsInterval, .rescanFrames, .setFreeMemoryReporting:
            peer.forward(command, client: client.id, id: request.id)
        }
    }

    func agentRequest(_ client: Client, _ request: Request) {
        let command: AgentCommand
        do { command = try AgentCommand(request) } catch {
            return send(client, Response(id: request.id, result: .failure(error)))
        }
        switch command {
        case let .selectGuest(name):
            guard let peer = peersByName[name] else { return send(client, Response(id: request.id, result: .failure(AgentCommand.noSuchGuest(name)))) }
            client.selected = peer.id
            send(client, Response(id: request.id, reply: GuestSelectedReply(name: name)))
        case .listGuests:
            let rows = peersByName.keys.sorted().compactMap { peersByName[$0]?.summary }
            send(client, Response(id: request.id, reply: GuestListReply(guests: rows)))
        case let .guestStatus(name):
            guard let peer = peersByName[name] else { return send(client, Response(id: request.id, result: .failure(AgentCommand.noSuchGuest(name)))) }
            send(client, Response(id: request.id, reply: GuestStatusReply(guest: peer.summary, session: peer.currentStatus)))
        case .policyStatus, .setGuestPolicy:
            guard let agent else {
                return send(client, Response(id: request.id, result: .failure(ProtocolError(.commandNotFound, "\(command.name.rawValue) is balloon-hostd's (balloonctl serve has no policy)"))))
            }
            send(client, Response(id: request.id, result: agent.answer(command)))
        }
    }

    func replyToClient(_ clientID: UInt64, _ response: Response) {
        guard let client = clients[clientID] else { return }
        send(client, response)
    }

    func send(_ client: Client, _ response: Response) {
        enqueue(client, Message.response(response).encoded())
    }

    /// A guest's line (without its newline) to the clients that selected
    /// the guest; nothing is copied when none did (the agent's usual case).
    func broadcastLine(_ line: [UInt8], from peer: UInt64) {
        guard clients.values.contains(where: { $0.selected == peer }) else { return }
        broadcast(line + [0x0A], from: peer)
    }

    /// A guest's event line, to the clients that selected that guest.
    func broadcast(_ bytes: [UInt8], from peer: UInt64) {
        for client in Array(clients.values) where client.selected == peer { enqueue(client, bytes) }
    }

    func enqueue(_ client: Client, _ bytes: [UInt8]) {
        guard clients[client.id] != nil else { return }
        do {
            guard try client.connection.send(bytes) else {
                clientsDropped += 1
                return drop(client, reason: "not reading (more than \(settings.clientOutboxLimit) bytes unsent)")
            }
        } catch {
            drop(client, reason: nil)
        }
    }

    func flushClient(_ client: Client) {
        do { try client.connection.flush() } catch {
            drop(client, reason: nil)
        }
    }

    /// The tick's check (`Settings.clientTimeouts`): a client holding its
    /// slot without a request in time, or idle with no guest selected, is
    /// dropped and counted. One log line per reason and tick: a flood of
    /// such clients must not become a flood of log lines.
    func dropStalledClients(now: Duration) {
        let rule = settings.clientTimeouts
        var dropped: [String: [UInt64]] = [:]
        for client in clients.values.sorted(by: { $0.id < $1.id }) {
            // Subscribed: its guest's events come to it (a removed guest's do not).
            let subscribed = client.selected.map { peers[$0] != nil } ?? false
            let verdict = rule.verdict(client.activity, now: now, subscribed: subscribed)
            guard let reason = rule.reason(verdict) else { continue }
            clientsDropped += 1
            drop(client, reason: nil)
            dropped[reason, default: []].append(client.id)
        }
        for (reason, ids) in dropped.sorted(by: { $0.key < $1.key }) {
            let named = ids.prefix(8).map(String.init).joined(separator: ", ") + (ids.count > 8 ? ", …" : "")
            log(ids.count == 1 ? "control client \(named) dropped: \(reason)" : "\(ids.count) control clients dropped (\(named)): \(reason)")
        }
    }

    func drop(_ client: Client, reason: String?) {
        guard clients.removeValue(forKey: client.id) != nil else { return }
        if let reason { log("control client \(client.id) dropped: \(reason)") }
        client.connection.unregister()
        client.fd.close()
    }
}

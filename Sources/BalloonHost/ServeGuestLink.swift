// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonProtocol
import BalloonSystem

// A peer's guest link: connect, sync, requests and their replies, timeouts,
// reconnect with backoff.

extension GuestPeer {
    final class GuestLink {
        /// The guest's socket with its framer, outbox and write interest:
        /// the same line connection the guest daemon uses for its host.
        let connection: LineConnection
        var fd: Descriptor { connection.descriptor }
        let generation: UInt64
        let syncID: Int64
        var sawResync = false
        var synced = false
        var nextID: Int64 = 1
        var pending: [Int64: (what: Pending, sentAt: Duration, command: Command.Name)] = [:]
        let connectedAt: Duration

        init(fd: Descriptor, generation: UInt64, syncID: Int64, now: Duration) {
            connection = LineConnection(descriptor: fd, peer: "guest")
            self.generation = generation
            self.syncID = syncID
            connectedAt = now
        }
    }

    func connectGuest() {
        let fd: Descriptor
        do {
            fd = try options.guest.connect(timeout: options.connectTimeout)
        } catch {
            let text = error.description
            status.lastError = text
            if text != lastConnectError { options.log(text + " (retrying)") }
            lastConnectError = text
            scheduleReconnect()
            return
        }
        do { try fd.setNonBlocking() } catch {
            // A blocking guest socket would stall the loop: drop it and retry.
            options.log("cannot make the guest connection non-blocking: \(error) (retrying)")
            scheduleReconnect()
            return
        }
        lastConnectError = nil
        generation += 1
        let syncID = Int64.random(in: 1...(1 << 53 - 1))
        let link = GuestLink(fd: fd, generation: generation, syncID: syncID, now: clock())
        self.link = link
        do { try link.connection.register(in: loop.epoll, token: ServeLoop.guestToken(peer: id, generation: generation), events: .readable) } catch {
            disconnect("\(error)")
            return
        }
        let request = Message.request(Command.sync(id: .int(syncID)).request(id: .int(syncID)))
        sendToGuest([LineFramer.resyncByte] + request.encoded())
    }

    func scheduleReconnect() {
        do { try reconnectTimer.arm(after: backoff) } catch {
            // Without the timer serve would not reconnect: say so.
            options.log("cannot arm the reconnect timer: \(error)")
        }
        backoff = min(backoff * 2, options.backoffMax)
    }

    /// Drops the session: pending forwarded requests get an error, the frames
    /// the guest reported are forgotten (nothing further is freed for this
    /// session, protocol rule 3), and a reconnect is scheduled.
    func disconnect(_ reason: String, reconnect: Bool = true) {
        guard let link else { return }
        self.link = nil
        link.connection.unregister()
        link.fd.close()
        status.lastError = reason
        status.freeMemoryReporting = false
        abandonHeldFrames()  // also resets the ledger's session and frame reporting
        agent.sample = nil
        for (_, p) in link.pending.sorted(by: { $0.key < $1.key }) {
            if case let .forward(clientID, id, target, previous) = p.what {
                if let target, status.desiredTarget == target { status.desiredTarget = previous }
                loop.replyToClient(clientID, Response(id: id, result: .failure(ProtocolError(.genericError, "guest connection lost before it answered (reconnecting)"))))
            }
        }
        if reconnect {
            options.log("guest connection lost: \(reason); reconnecting in \(HostFormat.seconds(backoff.seconds))")
            scheduleReconnect()
        }
    }

    func sendToGuest(_ bytes: [UInt8]) {
        guard let link else { return }
        do {
            guard try link.connection.send(bytes) else {
                return disconnect("the guest is not reading (\(link.connection.maxOutboxBytes) bytes unsent)")
            }
        } catch {
            disconnect("write to the guest failed: \(error.cause)")
        }
    }

    func flushGuest() {
        guard let link else { return }
        do { try link.connection.flush() } catch {
            disconnect("write to the guest failed: \(error.cause)")
        }
    }

    /// Sends a request of serve's own or a forwarded one; returns its id.
    func guestRequest(_ command: Command, for what: Pending) {
        guard let link, link.synced else { return }
        let id = link.nextID
        link.nextID += 1
        link.pending[id] = (what, clock(), command.name)
        sendToGuest(Message.request(command.request(id: .int(id))).encoded())
    }

    func guestReadable() {
        guard let link else { return }
        let items: [LineFramer.Item]
        do {
            switch try link.connection.readAvailable(into: loop.buffer) {
            case .wouldBlock: return
            case .closed: return disconnect("the guest closed the connection")
            case let .items(read): items = read
            }
        } catch {
            return disconnect("read from the guest failed: \(error.cause)")
        }
        for item in items {
            guard self.link === link else { return }  // disconnected meanwhile
            switch item {
            case .resync:
                if !link.synced { link.sawResync = true }
            case .tooLong:
                guestMalformed += 1
            case let .line(line):
                if link.synced {
                    guestLine(line, link)
                } else if link.sawResync, case let .response(r)? = try? Message.decode(line), r.id == .int(link.syncID),
                    case let .success(value) = r.result, value == .int(link.syncID)
                {
                    synced(link)
                }
            // Before the guest's 0xFF and sync reply: stale, dropped.
            }
        }
    }

    func synced(_ link: GuestLink) {
        link.synced = true
        backoff = options.backoffInitial
        if hadSession { status.reconnects += 1 }
        hadSession = true
        options.log("guest \(options.guest) connected and synced")
        startSession(link)
    }

    /// A session's set-up, after `sync` or when a new daemon lifetime
    /// answers on a connection that stayed open (virtio-serial).
    func startSession(_ link: GuestLink) {
        lastAckedSeq = 0
        if ledger != nil {
            guestRequest(.setFrameReporting(enabled: true), for: .frameReporting)
            requestFreeMemoryReporting()
        }
        if let interval = options.statsInterval {
            guestRequest(.setStatsInterval(interval), for: .statsInterval)
        }
        guestRequest(.query, for: .query)
    }

    func guestLine(_ line: [UInt8], _ link: GuestLink) {
        // Every guest's STATS each second: read without a JSON tree
        // (StatsEventLine.swift); anything else takes the general decoder.
        if let stats = StatsReply(statsEventLine: line) {
            observe(stats)
            loop.broadcastLine(line, from: id)
            return
        }
        let message: Message
        do { message = try Message.decode(line) } catch {
            guestMalformed += 1
            return
        }
        switch message {
        case let .response(response):
            guard let id = response.id?.int64, let p = link.pending.removeValue(forKey: id) else {
                if case let .failure(error) = response.result { options.log("guest error without a matching request: \(error)") }
                return
            }
            guestReply(p.what, response.result, sentAt: p.sentAt)
        case let .event(event):
            switch GuestEvent.Name(rawValue: event.name) {
            case .framesInflated?, .framesDeflated?: frameEvent(event, link)
            // Passed on as received: clients ignore what they do not know.
            case .balloonChange?, .targetReached?, .targetUnreachable?, .stats?, .deflated?, nil:
                observe(event)
                loop.broadcastLine(line, from: id)
            }
        case .request:
            return
        }
    }

    /// `sentAt`: when the request went out (a success proves the daemon alive then).
    func guestReply(_ what: Pending, _ result: Result<JSON, ProtocolError>, sentAt: Duration) {
        switch what {
        case let .forward(clientID, id, target, previous):
            if case .failure = result, let target, status.desiredTarget == target { status.desiredTarget = previous }
            loop.replyToClient(clientID, Response(id: id, result: result))
        case .frameReporting:
            switch result {
            case let .success(value):
                let reply = try? FrameReportingReply(json: value)
                status.frameReporting = reply?.enabled ?? true
                liveness.start(instance: reply?.instance, grace: reply?.grace, sentAt: sentAt)
                if liveness.instance == nil {
                    options.log("the guest's balloond names no lifetime (older than protocol rule 5): frames are freed without checking that it is still alive")
                } else if !liveness.checksLiveness {
                    options.log("the guest's balloond keeps its balloon in its own process (HolderProcesses=no): its memory goes the moment it dies, so frames are freed without a liveness check")
                }
                options.log("frame reporting on (the guest holds \(reply.map { String($0.frames) } ?? "?") frames)")
                releaseHeldFrames()
            case let .failure(error):
                status.frameReporting = false
                status.lastError = "set-frame-reporting failed: \(error)"
                options.log("set-frame-reporting failed: \(error); frames will not be freed")
            }
        case .freeMemoryReporting:
            freeMemoryReportingReply(result)
        case .query:
            switch result {
            case let .success(value):
                guard let current = try? QueryReply(json: value) else {
                    options.log("unexpected query reply: \(PrintableText.escape(value.serialized()))")
                    return
                }
                agent.actual = current.actual
                agent.availableFloor = current.limits.memAvailableFloor
                agent.held = current.reason
                guard let desired = status.desiredTarget else { return }
                if current.target != desired {
                    options.log("re-applying target \(HumanBytes.format(desired)) (guest has \(HumanBytes.format(current.target)), actual \(HumanBytes.format(current.actual)))")
                    guestRequest(.setTarget(desired), for: .setTarget(desired))
                }
            case let .failure(error):
                options.log("query failed: \(error)")
            }
        case .statsInterval:
            if case let .failure(error) = result {
                status.lastError = "set-stats-interval failed: \(error)"
                options.log("set-stats-interval failed: \(error); the policy sees no stats from this guest")
            }
        case let .setTarget(target):
            if case let .failure(error) = result {
                status.lastError = "set-target \(target) failed: \(error)"
                options.log("set-target \(HumanBytes.format(target)) failed: \(error)")
            }
        case let .ack(seq, instance):
            switch result {
            case .success:
                liveness.proven(instance: instance, sentAt: sentAt)
            case let .failure(error) where error.errorClass == .staleInstance:
                if let instance { reportingLifetimeEnded(instance, error) }
            case let .failure(error):
                status.lastError = "frames-ack \(seq) failed: \(error)"
                options.log("frames-ack \(seq) failed: \(error)")
            }
        case let .probe(instance):
            guard liveness.instance == instance else { return }  // an earlier lifetime's probe
            probeOutstanding = false
            switch result {
            case .success:
                liveness.proven(instance: instance, sentAt: sentAt)
                releaseHeldFrames()
            case let .failure(error) where error.errorClass == .staleInstance:
                reportingLifetimeEnded(instance, error)
            case let .failure(error):
                // Not a sign of life: start over rather than free anything waiting.
                disconnect("frames-ack (serve's probe) failed: \(error)")
            }
        }
    }

    /// FRAMES_INFLATED / FRAMES_DEFLATED: validate, punch, then acknowledge.

    /// `now`: the tick's time, read once for every peer.
    func checkTimeouts(now: Duration) {
        guard let link else { return }
        // Synced with nothing pending, the usual case: nothing can be late.
        if link.synced, link.pending.isEmpty { return }
        let limit = options.guestTimeout
        if !link.synced {
            if now - link.connectedAt > limit {
                disconnect("the guest did not answer sync within \(HostFormat.seconds(options.guestTimeout.seconds))")
            }
            return
        }
        if let oldest = link.pending.values.min(by: { $0.sentAt < $1.sentAt }), now - oldest.sentAt > limit {
            disconnect("the guest did not answer \(oldest.command.rawValue) within \(HostFormat.seconds(options.guestTimeout.seconds))")
        }
    }
}

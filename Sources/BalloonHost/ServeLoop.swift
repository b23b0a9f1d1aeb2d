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

/// What `serve` needs to run.
public struct ServeOptions {
    /// The guest channel.
    public var guest: GuestAddress
    /// The control socket to listen on (created mode 0600).
    public var controlPath: String
    /// The target to keep applying after every (re)connect; later `set-target`
    /// calls on the control socket replace it.
    public var desiredTarget: UInt64?
    /// How long the guest may take to answer `sync` and each request before
    /// the connection is considered dead and re-made.
    public var guestTimeout: Duration = .seconds(10)
    /// The longest a connect (hybrid vsock handshake) may block the loop.
    public var connectTimeout: Duration = .seconds(2)
    /// Reconnect backoff: first delay, doubled after each failure up to the max.
    public var backoffInitialMilliseconds: UInt64 = 200
    public var backoffMaxMilliseconds: UInt64 = 5000
    /// A control client whose unsent output exceeds this is dropped.
    public var clientOutboxLimit = 1 << 20
    public var maxClients = 64
    /// Stop on SIGINT/SIGTERM (blocks them in the calling thread).
    public var handleSignals = false
    /// Where log lines go (one line each, no newline).
    public var log: (String) -> Void = { _ in }

    public init(guest: GuestAddress, controlPath: String) {
        self.guest = guest
        self.controlPath = controlPath
    }
}

/// Commands only `serve` answers on its control socket.
public enum ServeCommand {
    public static let status = "serve-status"
    /// Forwarded to the guest as they are.
    public static let forwarded: Set<String> = [
        CommandName.info, CommandName.setTarget, CommandName.query, CommandName.stats, CommandName.setStatsInterval,
        CommandName.rescanFrames,
    ]
    /// Owned by serve: refused from control clients.
    public static let owned: Set<String> = [CommandName.framesAck, CommandName.setFrameReporting]
    public static let notConnected = "guest not connected (reconnecting)"
}

/// The `serve-status` reply.
public struct ServeStatus: Sendable, Equatable {
    public var guestConnected = false
    /// Sessions re-established after the first one.
    public var reconnects: UInt64 = 0
    public var frameReporting = false
    public var framesHeld: UInt64 = 0
    public var bytesHeld: UInt64 = 0
    public var bytesFreed: UInt64 = 0
    public var punches: UInt64 = 0
    public var punchFailures: UInt64 = 0
    public var refused = RefusalCounters()
    public var lastError: String?
    public var desiredTarget: UInt64?
    public var controlClients = 0
    public var clientsDropped: UInt64 = 0
    /// Lines from the guest that were not valid messages (ignored).
    public var malformedLines: UInt64 = 0
    public var guest = ""
    public var memoryBackend: String?

    public init() {}

    public var json: JSON {
        [
            "guest-connected": .bool(guestConnected), "reconnects": .uint(reconnects),
            "frame-reporting": .bool(frameReporting), "frames-held": .uint(framesHeld),
            "bytes-freed": .uint(bytesFreed), "punches": .uint(punches), "refused": refused.json,
            "last-error": lastError.map(JSON.string) ?? .null,
            "bytes-held": .uint(bytesHeld), "punch-failures": .uint(punchFailures),
            "desired-target": desiredTarget.map(JSON.uint) ?? .null,
            "control-clients": .int(Int64(controlClients)), "clients-dropped": .uint(clientsDropped),
            "malformed-lines": .uint(malformedLines),
            "guest": .string(guest), "memory-backend": memoryBackend.map(JSON.string) ?? .null,
        ]
    }

    public init(_ json: JSON) {
        guestConnected = json["guest-connected"]?.bool ?? false
        reconnects = json["reconnects"]?.uint64 ?? 0
        frameReporting = json["frame-reporting"]?.bool ?? false
        framesHeld = json["frames-held"]?.uint64 ?? 0
        bytesHeld = json["bytes-held"]?.uint64 ?? 0
        bytesFreed = json["bytes-freed"]?.uint64 ?? 0
        punches = json["punches"]?.uint64 ?? 0
        punchFailures = json["punch-failures"]?.uint64 ?? 0
        let r = json["refused"]
        refused.outsideRam = r?["outside-ram"]?.uint64 ?? 0
        refused.overlap = r?["overlap"]?.uint64 ?? 0
        refused.rateLimit = r?["rate-limit"]?.uint64 ?? 0
        refused.malformed = r?["malformed"]?.uint64 ?? 0
        lastError = json["last-error"]?.string
        desiredTarget = json["desired-target"]?.uint64
        controlClients = Int(json["control-clients"]?.int64 ?? 0)
        clientsDropped = json["clients-dropped"]?.uint64 ?? 0
        malformedLines = json["malformed-lines"]?.uint64 ?? 0
        guest = json["guest"]?.string ?? ""
        memoryBackend = json["memory-backend"]?.string
    }
}

/// Bytes waiting to go out on a non-blocking socket.
struct Outbox {
    private var bytes: [UInt8] = []
    private var start = 0

    var count: Int { bytes.count - start }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ more: [UInt8]) {
        if start > 0 && start >= bytes.count / 2 {
            bytes.removeFirst(start)
            start = 0
        }
        bytes.append(contentsOf: more)
    }

    mutating func removeAll() {
        bytes.removeAll()
        start = 0
    }

    /// Sends what the socket takes. True when everything went.
    mutating func flush(_ fd: Int32) throws(SystemError) -> Bool {
        while start < bytes.count {
            let from = start
            let result: Result<Int?, SystemError> = bytes.withUnsafeBytes { raw in
                do throws(SystemError) { return .success(try StreamIO.sendSome(fd, UnsafeRawBufferPointer(rebasing: raw[from...]))) } catch {
                    return .failure(error)
                }
            }
            switch result {
            case let .failure(error): throw error
            case .success(nil): return false
            case let .success(n?): start += n
            }
        }
        bytes.removeAll(keepingCapacity: true)
        start = 0
        return true
    }
}

public final class ServeLoop {
    public let options: ServeOptions
    private var ledger: FrameLedger?
    private let puncher: BackendPuncher?
    private let clock: () -> UInt64

    private let epoll: Epoll
    private let listener: Descriptor
    private let reconnectTimer: TimerDescriptor
    private let tickTimer: TimerDescriptor
    private let stopEvent: EventDescriptor
    private var signals: SignalDescriptor?
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

    private enum Kind: UInt64 { case listener = 1, guest, reconnect, tick, signal, stop, client }
    private static func token(_ kind: Kind, _ id: UInt64 = 0) -> UInt64 { id << 8 | kind.rawValue }

    /// What a reply from the guest is for.
    private enum Pending {
        case forward(client: UInt64, id: JSON?, command: String, target: UInt64?, previousDesired: UInt64?)
        case frameReporting
        case query
        case setTarget(UInt64)
        case ack(UInt64)
    }

    private final class GuestLink {
        let fd: Descriptor
        let generation: UInt64
        let syncID: Int64
        var framer = LineFramer()
        var outbox = Outbox()
        var sawResync = false
        var synced = false
        var nextID: Int64 = 1
        var pending: [Int64: (what: Pending, sentAt: UInt64, command: String)] = [:]
        let connectedAt: UInt64
        var wantsWrite = false

        init(fd: Descriptor, generation: UInt64, syncID: Int64, now: UInt64) {
            self.fd = fd
            self.generation = generation
            self.syncID = syncID
            connectedAt = now
        }
    }

    private final class Client {
        let id: UInt64
        let fd: Descriptor
        var framer = LineFramer()
        var outbox = Outbox()
        var wantsWrite = false
        init(id: UInt64, fd: Descriptor) {
            self.id = id
            self.fd = fd
        }
    }

    private var link: GuestLink?
    private var generation: UInt64 = 0
    private var clients: [UInt64: Client] = [:]
    private var nextClientID: UInt64 = 1
    private var backoff: UInt64
    private var stopping = false
    private var hadSession = false
    private var lastConnectError: String?
    private var lastRefusalLog: UInt64 = 0
    private var guestMalformed: UInt64 = 0
    private var status = ServeStatus()

    /// Listens on the control socket. `frames`: the ledger and puncher when a
    /// memory backend was given. `clock`: monotonic nanoseconds.
    public init(
        options: ServeOptions, frames: (ledger: FrameLedger, puncher: BackendPuncher)? = nil,
        clock: @escaping () -> UInt64 = monotonicNanoseconds
    ) throws(HostError) {
        self.options = options
        self.ledger = frames?.ledger
        self.puncher = frames?.puncher
        self.clock = clock
        backoff = options.backoffInitialMilliseconds
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
                try epoll.add(s.descriptor.raw, events: .readable, token: Self.token(.signal))
            }
            try epoll.add(listener.raw, events: .readable, token: Self.token(.listener))
            try epoll.add(reconnectTimer.descriptor.raw, events: .readable, token: Self.token(.reconnect))
            try epoll.add(tickTimer.descriptor.raw, events: .readable, token: Self.token(.tick))
            try epoll.add(stopEvent.descriptor.raw, events: .readable, token: Self.token(.stop))
            try tickTimer.arm(afterMilliseconds: 250, repeating: true)
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
        options.log("serving \(options.guest) on \(options.controlPath)"
            + (puncher.map { " (memory backend \($0.file.path), guest RAM \(HumanBytes.format($0.ramSize)))" } ?? ""))
        connectGuest()
        while !stopping {
            let events: [(token: UInt64, events: EpollEvents)]
            do { events = try epoll.wait(timeoutMilliseconds: -1) } catch { throw .io(error) }
            for (token, ev) in events where !stopping {
                dispatch(token, ev)
            }
        }
        shutdown()
    }

    private func dispatch(_ token: UInt64, _ ev: EpollEvents) {
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

    private func shutdown() {
        if link != nil { disconnect("serve is stopping", reconnect: false) }
        for client in clients.values { drop(client, reason: nil) }
        epoll.remove(listener.raw)
        listener.close()
        _ = unlink(options.controlPath)
        options.log("stopped")
    }

    // MARK: - guest connection

    private func connectGuest() {
        let fd: Descriptor
        do {
            fd = try options.guest.connect(timeout: options.connectTimeout)
            try? fd.setNonBlocking()
        } catch {
            let text = error.description
            status.lastError = text
            if text != lastConnectError { options.log(text + " (retrying)") }
            lastConnectError = text
            scheduleReconnect()
            return
        }
        lastConnectError = nil
        generation += 1
        let syncID = Int64.random(in: 1...(1 << 53 - 1))
        let link = GuestLink(fd: fd, generation: generation, syncID: syncID, now: clock())
        self.link = link
        do { try epoll.add(fd.raw, events: .readable, token: Self.token(.guest, generation)) } catch {
            disconnect("\(error)")
            return
        }
        let request = Message.request(Request(CommandName.sync, arguments: ["id": .int(syncID)], id: .int(syncID)))
        sendToGuest([LineFramer.resyncByte] + request.encoded())
    }

    private func scheduleReconnect() {
        try? reconnectTimer.arm(afterMilliseconds: backoff)
        backoff = min(backoff * 2, options.backoffMaxMilliseconds)
    }

    /// Drops the session: pending forwarded requests get an error, the frames
    /// the guest reported are forgotten (nothing further is freed for this
    /// session, protocol rule 3), and a reconnect is scheduled.
    private func disconnect(_ reason: String, reconnect: Bool = true) {
        guard let link else { return }
        self.link = nil
        epoll.remove(link.fd.raw)
        link.fd.close()
        status.lastError = reason
        status.frameReporting = false
        ledger?.resetSession()
        for (_, p) in link.pending.sorted(by: { $0.key < $1.key }) {
            if case let .forward(clientID, id, _, target, previous) = p.what {
                if let target, status.desiredTarget == target { status.desiredTarget = previous }
                replyToClient(clientID, Response(id: id, result: .failure(ProtocolError(.genericError, "guest connection lost before it answered (reconnecting)"))))
            }
        }
        if reconnect {
            options.log("guest connection lost: \(reason); reconnecting in \(HostFormat.seconds(Double(backoff) / 1000))")
            scheduleReconnect()
        }
    }

    private func sendToGuest(_ bytes: [UInt8]) {
        guard let link else { return }
        link.outbox.append(bytes)
        flushGuest()
    }

    private func flushGuest() {
        guard let link else { return }
        do {
            let drained = try link.outbox.flush(link.fd.raw)
            if drained == link.wantsWrite {
                link.wantsWrite = !drained
                try epoll.modify(link.fd.raw, events: drained ? .readable : [.readable, .writable], token: Self.token(.guest, link.generation))
            }
        } catch {
            disconnect("write to the guest failed: \(error.cause)")
        }
    }

    /// Sends a request of serve's own or a forwarded one; returns its id.
    private func guestRequest(_ command: String, _ arguments: JSON = .object([]), for what: Pending) {
        guard let link, link.synced else { return }
        let id = link.nextID
        link.nextID += 1
        link.pending[id] = (what, clock(), command)
        sendToGuest(Message.request(Request(command, arguments: arguments, id: .int(id))).encoded())
    }

    private func guestReadable() {
        guard let link else { return }
        let n: Int?
        do { n = try StreamIO.receiveSome(link.fd.raw, into: buffer) } catch {
            disconnect("read from the guest failed: \(error.cause)")
            return
        }
        guard let n else { return }
        if n == 0 {
            disconnect("the guest closed the connection")
            return
        }
        for item in link.framer.feed(UnsafeRawBufferPointer(rebasing: buffer[..<n])) {
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

    private func synced(_ link: GuestLink) {
        link.synced = true
        backoff = options.backoffInitialMilliseconds
        if hadSession { status.reconnects += 1 }
        hadSession = true
        options.log("guest \(options.guest) connected and synced")
        if ledger != nil {
            guestRequest(CommandName.setFrameReporting, ["enabled": true], for: .frameReporting)
        }
        guestRequest(CommandName.query, for: .query)
    }

    private func guestLine(_ line: [UInt8], _ link: GuestLink) {
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
            guestReply(p.what, command: p.command, response.result)
        case let .event(event):
            if event.name == EventName.framesInflated || event.name == EventName.framesDeflated {
                frameEvent(event, link)
            } else {
                broadcast(line + [0x0A])
            }
        case .request:
            return
        }
    }

    private func guestReply(_ what: Pending, command: String, _ result: Result<JSON, ProtocolError>) {
        switch what {
        case let .forward(clientID, id, _, target, previous):
            if case .failure = result, let target, status.desiredTarget == target { status.desiredTarget = previous }
            replyToClient(clientID, Response(id: id, result: result))
        case .frameReporting:
            switch result {
            case let .success(value):
                status.frameReporting = value["enabled"]?.bool ?? true
                options.log("frame reporting on (the guest holds \(value["frames"]?.uint64.map(String.init) ?? "?") frames)")
            case let .failure(error):
                status.frameReporting = false
                status.lastError = "set-frame-reporting failed: \(error)"
                options.log("set-frame-reporting failed: \(error); frames will not be freed")
            }
        case .query:
            switch result {
            case let .success(value):
                guard let desired = status.desiredTarget else { return }
                guard let current = try? BalloonStatus(value) else {
                    options.log("unexpected query reply: \(value.serialized())")
                    return
                }
                if current.target != desired {
                    options.log("re-applying target \(HumanBytes.format(desired)) (guest has \(HumanBytes.format(current.target)), actual \(HumanBytes.format(current.actual)))")
                    guestRequest(CommandName.setTarget, ["target": .uint(desired)], for: .setTarget(desired))
                }
            case let .failure(error):
                options.log("query failed: \(error)")
            }
        case let .setTarget(target):
            if case let .failure(error) = result {
                status.lastError = "set-target \(target) failed: \(error)"
                options.log("set-target \(HumanBytes.format(target)) failed: \(error)")
            }
        case let .ack(seq):
            if case let .failure(error) = result {
                status.lastError = "frames-ack \(seq) failed: \(error)"
                options.log("frames-ack \(seq) failed: \(error)")
            }
        }
    }

    /// FRAMES_INFLATED / FRAMES_DEFLATED: validate, punch, then acknowledge.
    private func frameEvent(_ event: Event, _ link: GuestLink) {
        guard ledger != nil, let puncher else {
            // No backend: nothing to free. Acknowledge (ignored) if there is a seq.
            if let seq = event.data["seq"]?.uint64 { guestRequest(CommandName.framesAck, ["seq": .uint(seq)], for: .ack(seq)) }
            return
        }
        // Rule 3: a session that has ended frees nothing more. The peer may
        // have closed with this event still unread: check before punching.
        if StreamIO.peerClosed(link.fd.raw) {
            disconnect("the guest closed the connection (\(event.name) not acted upon)")
            return
        }
        let now = clock()
        guard let decision = ledger!.handle(event: event.name, data: event.data, now: now) else { return }
        let failuresBefore = puncher.failures
        if !decision.punches.isEmpty { puncher.punch(decision.punches) }
        if puncher.failures > failuresBefore {
            let text = puncher.lastError.map { "\($0)" } ?? "a range beyond guest RAM"
            status.lastError = "punch failed: \(text)"
            options.log("punch failed: \(text)")
        }
        if decision.refused.total > 0, now &- lastRefusalLog >= 1_000_000_000 || lastRefusalLog == 0 {
            lastRefusalLog = now
            let r = ledger!.refused
            options.log("\(event.name) seq \(decision.seq.map(String.init) ?? "?"): refused ranges (totals: outside RAM \(r.outsideRam), overlap \(r.overlap), rate limit \(r.rateLimit), malformed \(r.malformed))")
        }
        if let seq = decision.seq {
            guestRequest(CommandName.framesAck, ["seq": .uint(seq)], for: .ack(seq))
        }
    }

    private func checkTimeouts() {
        guard let link else { return }
        let now = clock()
        let limit = UInt64(options.guestTimeout.seconds * 1e9)
        if !link.synced {
            if now &- link.connectedAt > limit {
                disconnect("the guest did not answer sync within \(HostFormat.seconds(options.guestTimeout.seconds))")
            }
            return
        }
        if let oldest = link.pending.values.min(by: { $0.sentAt < $1.sentAt }), now &- oldest.sentAt > limit {
            disconnect("the guest did not answer \(oldest.command) within \(HostFormat.seconds(options.guestTimeout.seconds))")
        }
    }

    // MARK: - control clients

    private func acceptClients() {
        while true {
            let fd: Descriptor?
            do { fd = try StreamSocket.accept(listener) } catch {
                options.log("accept on \(options.controlPath) failed: \(error)")
                return
            }
            guard let fd else { return }
            guard clients.count < options.maxClients else {
                options.log("control client refused: \(options.maxClients) already connected")
                fd.close()
                continue
            }
            let client = Client(id: nextClientID, fd: fd)
            nextClientID += 1
            do { try epoll.add(fd.raw, events: .readable, token: Self.token(.client, client.id)) } catch {
                fd.close()
                continue
            }
            clients[client.id] = client
        }
    }

    private func clientReadable(_ client: Client) {
        let n: Int?
        do { n = try StreamIO.receiveSome(client.fd.raw, into: buffer) } catch {
            drop(client, reason: nil)
            return
        }
        guard let n else { return }
        if n == 0 {
            drop(client, reason: nil)
            return
        }
        for item in client.framer.feed(UnsafeRawBufferPointer(rebasing: buffer[..<n])) {
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
                    clientRequest(client, request)
                case .success:
                    send(client, Response(id: nil, result: .failure(ProtocolError(.malformedMessage, "expected a request"))))
                }
            }
        }
    }

    private func clientRequest(_ client: Client, _ request: Request) {
        let command = request.execute
        func fail(_ cls: ErrorClass, _ desc: String) {
            send(client, Response(id: request.id, result: .failure(ProtocolError(cls, desc))))
        }
        switch command {
        case CommandName.sync:
            guard let id = request.arguments["id"] else { return fail(.invalidParameter, "sync: missing argument \"id\"") }
            enqueue(client, [LineFramer.resyncByte] + Message.response(Response(id: request.id, result: .success(id))).encoded())
        case ServeCommand.status:
            send(client, Response(id: request.id, result: .success(currentStatus.json)))
        case _ where ServeCommand.owned.contains(command):
            fail(.invalidParameter, "\(command) is owned by balloonctl serve (it enables frame reporting when it has a memory backend)")
        case _ where ServeCommand.forwarded.contains(command):
            guard let link, link.synced else { return fail(.genericError, ServeCommand.notConnected) }
            var target: UInt64?
            var previous: UInt64?
            if command == CommandName.setTarget, let t = request.arguments["target"]?.uint64 {
                // Recorded now, so a re-apply racing with this call uses it;
                // restored if the guest refuses it.
                target = t
                previous = status.desiredTarget
                status.desiredTarget = t
            }
            guestRequest(command, request.arguments,
                for: .forward(client: client.id, id: request.id, command: command, target: target, previousDesired: previous))
        default:
            fail(.commandNotFound, "no such command: \(command)")
        }
    }

    private func replyToClient(_ clientID: UInt64, _ response: Response) {
        guard let client = clients[clientID] else { return }
        send(client, response)
    }

    private func send(_ client: Client, _ response: Response) {
        enqueue(client, Message.response(response).encoded())
    }

    private func broadcast(_ bytes: [UInt8]) {
        for client in Array(clients.values) { enqueue(client, bytes) }
    }

    private func enqueue(_ client: Client, _ bytes: [UInt8]) {
        guard clients[client.id] != nil else { return }
        client.outbox.append(bytes)
        flushClient(client)
        if clients[client.id] != nil, client.outbox.count > options.clientOutboxLimit {
            status.clientsDropped += 1
            drop(client, reason: "not reading (\(client.outbox.count) bytes unsent)")
        }
    }

    private func flushClient(_ client: Client) {
        do {
            let drained = try client.outbox.flush(client.fd.raw)
            if drained == client.wantsWrite {
                client.wantsWrite = !drained
                try epoll.modify(client.fd.raw, events: drained ? .readable : [.readable, .writable], token: Self.token(.client, client.id))
            }
        } catch {
            drop(client, reason: nil)
        }
    }

    private func drop(_ client: Client, reason: String?) {
        guard clients.removeValue(forKey: client.id) != nil else { return }
        if let reason { options.log("control client \(client.id) dropped: \(reason)") }
        epoll.remove(client.fd.raw)
        client.fd.close()
    }
}

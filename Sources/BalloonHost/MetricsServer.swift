// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonMetrics
import BalloonSystem

/// balloon-hostd's `/metrics` endpoint, in the agent's one epoll loop (no
/// thread): a minimal, strict HTTP/1.x server (docs/metrics.md "The server").
/// The request head is parsed by `HTTPRequestParser` and the page rendered
/// by `TextFormat` (BalloonMetrics, pure); this file only moves bytes:
/// bounded head, one deadline per connection, a bounded number of clients,
/// one response then `Connection: close`, non-blocking writes.
final class MetricsServer {
    struct Limits {
        var headBytes = HTTPRequestParser.defaultLimit
        /// From accept to the last byte sent: a slow or stuck client is cut.
        var timeout: Duration = .seconds(10)
        var maxClients = 16
    }

    final class Connection {
        let id: UInt64
        let fd: Descriptor
        let deadline: Duration
        var head: [UInt8] = []
        /// The response, once decided; `sent` bytes of it are out.
        var out: [UInt8]?
        var sent = 0
        /// Response sent and our side shut: reading to EOF, so unread input
        /// does not turn the close into a reset that loses the response.
        var draining = false
        var watchingWrites = false

        init(id: UInt64, fd: Descriptor, deadline: Duration) {
            self.id = id
            self.fd = fd
            self.deadline = deadline
        }
    }

    unowned let loop: ServeLoop
    let listener: Descriptor
    let timer: TimerDescriptor
    let limits: Limits
    /// Connections refused (503) for the client limit.
    var refused: UInt64 = 0
    /// Where it listens, as the log and errors name it.
    let address: String
    let render: () -> [UInt8]
    /// A unix socket's path, removed at `close`.
    var unixPath: String?
    var connections: [UInt64: Connection] = [:]
    var nextID: UInt64 = 1
    var timerArmed = false

    init(listen: MetricsListen, limits: Limits = Limits(), loop: ServeLoop, render: @escaping () -> [UInt8]) throws(HostError) {
        self.loop = loop
        self.limits = limits
        self.render = render
        do {
            switch listen {
            case .off:
                throw HostError.usage("metrics are off")
            case let .tcp(ip, port):
                listener = try StreamSocket.listenTCP(address: ip.bytes, port: port, subject: listen.description)
                let bound = try StreamSocket.localPort(listener)
                address = MetricsListen.tcp(address: ip, port: bound).description
            case let .unix(path):
                listener = try StreamSocket.listenUnix(path: path, backlog: 16)
                address = path
                unixPath = path
            }
            timer = try TimerDescriptor()
            try loop.epoll.add(listener, events: .readable, token: ServeLoop.token(.metricsListener))
            try loop.epoll.add(timer.descriptor, events: .readable, token: ServeLoop.token(.metricsTimer))
        } catch let error as HostError {
            throw error
        } catch {
            throw .usage("cannot serve metrics on \(listen): \(error)")
        }
    }

    func acceptClients() {
        while true {
            let fd: Descriptor?
            do { fd = try StreamSocket.accept(listener) } catch {
                loop.log("metrics: accept on \(address) failed: \(error)")
                return
            }
            guard let fd else { return }
            guard connections.count < limits.maxClients else {
                refused += 1
                // Best effort, one non-blocking send: a busy server says so.
                let busy = HTTPResponse.error(503, "too many metrics clients").bytes
                _ = busy.withUnsafeBytes { try? StreamIO.sendSome(fd, $0) }
                fd.close()
                continue
            }
            let c = Connection(id: nextID, fd: fd, deadline: loop.clock() + limits.timeout)
            nextID += 1
            do { try loop.epoll.add(fd, events: .readable, token: ServeLoop.token(.metricsClient, c.id)) } catch {
                loop.log("metrics: cannot watch a client: \(error)")
                fd.close()
                continue
            }
            connections[c.id] = c
            armTimer()
        }
    }

    func clientEvent(_ id: UInt64, _ events: EpollEvents) {
        guard let c = connections[id] else { return }
        if events.contains(.writable), c.out != nil { flush(c) }
        guard connections[id] != nil, !events.isDisjoint(with: [.readable, .hangup, .error]) else { return }
        readable(c)
    }

    /// A few reads per event (epoll is level-triggered): a client flooding
    /// input after its head cannot hold the loop.
    func readable(_ c: Connection) {
        for _ in 0..<4 where connections[c.id] != nil {
            let n: Int?
            do { n = try StreamIO.receiveSome(c.fd, into: loop.buffer) } catch { return finish(c) }
            guard let n else { return }
            if n == 0 { return finish(c) }  // the client is gone (or done, when draining)
            // Input after the head (a body, a pipelined request) is read and dropped.
            guard c.out == nil else { continue }
            c.head += loop.buffer[..<min(n, limits.headBytes + 4 - c.head.count)]
            switch HTTPRequestParser.parse(c.head, limit: limits.headBytes) {
            case .incomplete: continue
            case let .failed(error): respond(c, MetricsEndpoint.respond(to: error))
            case let .complete(head, _): respond(c, MetricsEndpoint.respond(to: head, render: render))
            }
        }
    }

    func respond(_ c: Connection, _ response: HTTPResponse) {
        c.head = []
        c.out = response.bytes
        flush(c)
    }

    func flush(_ c: Connection) {
        guard let out = c.out, !c.draining else { return }
        while c.sent < out.count {
            let n: Int?
            do { n = try out.withUnsafeBytes { (b) throws(SystemError) in try StreamIO.sendSome(c.fd, UnsafeRawBufferPointer(rebasing: b[c.sent...])) } } catch {
                return finish(c)
            }
            guard let n, n > 0 else {
                if !c.watchingWrites {
                    c.watchingWrites = true
                    try? loop.epoll.modify(c.fd, events: [.readable, .writable], token: ServeLoop.token(.metricsClient, c.id))
                }
                return
            }
            c.sent += n
        }
        c.out = []
        c.draining = true
        try? loop.epoll.modify(c.fd, events: .readable, token: ServeLoop.token(.metricsClient, c.id))
        // Our side is done; the client's EOF (or the deadline) ends it.
        StreamSocket.shutdownWrite(c.fd)
    }

    func finish(_ c: Connection) {
        loop.epoll.remove(c.fd)
        c.fd.close()
        connections[c.id] = nil
        if connections.isEmpty { disarmTimer() }
    }

    /// Connections past their deadline are cut; one still sending its head
    /// gets a 408 first (best effort).
    func timerFired() {
        timer.acknowledge()
        let now = loop.clock()
        for c in Array(connections.values) where now >= c.deadline {
            if c.out == nil {
                let late = HTTPResponse.error(408, "request head not received within \(limits.timeout)").bytes
                _ = late.withUnsafeBytes { try? StreamIO.sendSome(c.fd, $0) }
            }
            finish(c)
        }
    }

    /// A 1 s check only while a client is connected: an idle agent gets no wake-ups from it.
    func armTimer() {
        guard !timerArmed else { return }
        do {
            try timer.arm(after: .seconds(1), repeating: true)
            timerArmed = true
        } catch { loop.log("metrics: cannot arm the client timer: \(error)") }
    }

    func disarmTimer() {
        guard timerArmed else { return }
        try? timer.disarm()
        timerArmed = false
    }

    func close() {
        for c in Array(connections.values) { finish(c) }
        loop.epoll.remove(listener)
        listener.close()
        loop.epoll.remove(timer.descriptor)
        timer.descriptor.close()
        if let unixPath { try? ProcessControl.removeFile(unixPath) }
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonProtocol
import BalloonSystem

/// N fake guests, each listening on its own unix socket `DIR/NAME.sock`, in
/// one epoll loop: protocol v1 replies from the guest's model, STATS events
/// at each guest's interval (staggered, as real guests are), frame
/// reporting refused (the simulator has no RAM to report).
final class SimLoop {
    let epoll: Epoll
    var guests: [FakeGuest]
    private var listeners: [Descriptor] = []
    private var connections: [LineConnection?]
    private let tick: TimerDescriptor
    private static let tickToken = UInt64.max
    private var scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    private(set) var statsSent: UInt64 = 0
    private(set) var requests: UInt64 = 0

    init(directory: String, guests: [FakeGuest], tickEvery: Duration = .milliseconds(100)) throws(SystemError) {
        epoll = try Epoll()
        self.guests = guests
        connections = Array(repeating: nil, count: guests.count)
        for (i, guest) in guests.enumerated() {
            let fd = try StreamSocket.listenUnix(path: "\(directory)/\(guest.name).sock", backlog: 8)
            try epoll.add(fd, events: .readable, token: UInt64(i) << 1)
            listeners.append(fd)
        }
        tick = try TimerDescriptor()
        try epoll.add(tick.descriptor, events: .readable, token: Self.tickToken)
        try tick.arm(after: tickEvery, repeating: true)
    }

    /// Serves until `deadline` (monotonic), or forever.
    func run(until deadline: Duration?) throws(SystemError) {
        while deadline.map({ SystemClock.monotonic() < $0 }) ?? true {
            for (token, events) in try epoll.wait(timeout: .seconds(1), max: 256) {
                if token == Self.tickToken {
                    _ = tick.acknowledge()
                    publishStats()
                    continue
                }
                let index = Int(token >> 1)
                if token & 1 == 0 {
                    accept(index)
                } else {
                    serve(index, events)
                }
            }
        }
    }

    private func accept(_ i: Int) {
        while let fd = try? StreamSocket.accept(listeners[i]) {
            // A newer host connection replaces an older one, as in balloond.
            drop(i)
            let connection = LineConnection(descriptor: fd, peer: guests[i].name)
            do { try connection.register(in: epoll, token: UInt64(i) << 1 | 1, events: .readable) } catch {
                fd.close()
                continue
            }
            connections[i] = connection
            let now = SystemClock.monotonic()
            if let interval = guests[i].statsInterval {
                guests[i].nextStats = now + interval * (Double(UInt64(i) &* 0x9E37_79B9 % 1000) / 1000)
            }
            guests[i].advance(to: now)
        }
    }

    private func drop(_ i: Int) {
        guard let c = connections[i] else { return }
        c.unregister()
        c.descriptor.close()
        connections[i] = nil
    }

    private func serve(_ i: Int, _ events: EpollEvents) {
        guard let c = connections[i] else { return }
        if events.contains(.writable) {
            do { try c.flush() } catch { drop(i); return }
        }
        guard events.contains(.readable) || events.contains(.hangup) || events.contains(.error) else { return }
        while true {
            let result: LineConnection.ReadResult
            do { result = try c.readAvailable(into: scratch) } catch { drop(i); return }
            switch result {
            case .wouldBlock: return
            case .closed: drop(i); return
            case let .items(items):
                for item in items { handle(item, guest: i) }
                guard connections[i] != nil else { return }
            }
        }
    }

    private func send(_ bytes: [UInt8], to i: Int) {
        guard let c = connections[i] else { return }
        do {
            guard try c.send(bytes) else { drop(i); return }
        } catch { drop(i) }
    }

    private func handle(_ item: LineFramer.Item, guest i: Int) {
        switch item {
        case .resync: return
        case let .tooLong(limit):
            reply(Response(id: nil, result: .failure(ProtocolError(.lineTooLong, "line longer than \(limit) bytes discarded"))), to: i)
        case let .line(bytes):
            requests += 1
            let message: Message
            do { message = try Message.decode(bytes) } catch {
                reply(Response(id: nil, result: .failure(error)), to: i)
                return
            }
            guard case let .request(request) = message else {
                reply(Response(id: nil, result: .failure(ProtocolError(.malformedMessage, "the guest accepts only requests (\"execute\")"))), to: i)
                return
            }
            var event: GuestEvent?
            let result: Result<JSON, ProtocolError>
            do {
                let command = try Command(request)
                if case .sync = command { send([LineFramer.resyncByte], to: i) }
                result = .success(try execute(command, guest: i, event: &event))
            } catch {
                result = .failure(error)
            }
            reply(Response(id: request.id, result: result), to: i)
            if let event { publish(event, to: i) }
        }
    }

    private func execute(_ command: Command, guest i: Int, event: inout GuestEvent?) throws(ProtocolError) -> JSON {
        switch command {
        case let .sync(id):
            return id
        case .info:
            return guests[i].info().json
        case let .setTarget(target):
            let reply = try guests[i].setTarget(target)
            event = .targetReached(BalloonProgress(actual: reply.actual, target: reply.target))
            return reply.json
        case .query:
            return guests[i].query().json
        case .stats:
            let now = SystemClock.monotonic()
            guests[i].advance(to: now)
            return guests[i].stats(at: now, wallClock: Self.wallClock()).json
        case let .setStatsInterval(interval):
            guests[i].statsInterval = interval == .zero ? nil : interval
            guests[i].nextStats = SystemClock.monotonic() + interval
            return StatsIntervalReply(interval: interval).json
        case let .setFrameReporting(enabled):
            if enabled {
                throw ProtocolError(.genericError, "set-frame-reporting: the simulator has no frames to report")
            }
            return FrameReportingReply(enabled: false, pageSize: guests[i].pageSize, frames: 0).json
        case .framesAck, .rescanFrames, .setFreeMemoryReporting:
            throw ProtocolError(.genericError, "\(command.name.rawValue): frame reporting is off")
        case .serveStatus:
            throw Command.notFound(command.name.rawValue)
        }
    }

    private func reply(_ response: Response, to i: Int) {
        send(Message.response(response).encoded(), to: i)
    }

    private func publish(_ event: GuestEvent, to i: Int) {
        send(Message.event(event.event(at: Self.wallClock())).encoded(), to: i)
    }

    /// Every connected guest whose stats are due sends a STATS event.
    private func publishStats() {
        let now = SystemClock.monotonic()
        let wall = Self.wallClock()
        for i in guests.indices where connections[i] != nil {
            guard let interval = guests[i].statsInterval, now >= guests[i].nextStats else { continue }
            guests[i].nextStats = Swift.max(guests[i].nextStats + interval, now)
            guests[i].advance(to: now)
            publish(.stats(guests[i].stats(at: now, wallClock: wall)), to: i)
            statsSent += 1
        }
    }

    static func wallClock() -> Timestamp {
        let t = SystemClock.realtime().components
        return Timestamp(seconds: t.seconds, microseconds: t.attoseconds / 1_000_000_000_000)
    }
}

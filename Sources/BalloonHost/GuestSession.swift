// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem

/// One conversation with a guest's balloond over a connected stream.
///
/// Not thread-safe: one thread drives a session. Requests are sent one at a
/// time; events that arrive while waiting for a reply are queued for
/// `nextEvent`.
public final class GuestSession {
    public let descriptor: Descriptor
    /// How long `sync` and each `call` wait for their reply.
    public var timeout: Duration

    private var framer = LineFramer()
    /// Lines read from the stream but not looked at yet (a read may carry
    /// more than the reply being waited for).
    private var pendingLines: [[UInt8]] = []
    private var queuedEvents: [Event] = []
    private var nextID: Int64 = 1
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    /// True once a `.resync` (0xFF) has been read during `sync`.
    private var sawResync = false

    /// Lines from the guest that were not valid messages (ignored, counted).
    public private(set) var malformedLines = 0

    public init(descriptor: Descriptor, timeout: Duration = .seconds(5)) {
        self.descriptor = descriptor
        self.timeout = timeout
    }

    deinit { readBuffer.deallocate() }

    /// Connects to `address`, then `sync`s.
    public static func open(_ address: GuestAddress, timeout: Duration = .seconds(5)) throws(HostError) -> GuestSession {
        let session = GuestSession(descriptor: try address.connect(timeout: timeout), timeout: timeout)
        try session.sync()
        return session
    }

    public func close() { descriptor.close() }

    // MARK: - sync

    /// docs/protocol.md "Starting a session": write 0xFF and a `sync` with a
    /// fresh random id N, discard everything up to the 0xFF the guest writes,
    /// then lines until the reply whose `return` equals N. Everything before
    /// that (stale replies, events) is dropped.
    @discardableResult
    public func sync() throws(HostError) -> Int64 {
        let id = Int64.random(in: 1...(1 << 53 - 1))
        let request = Message.request(Command.sync(id: .int(id)).request(id: .int(id)))
        try send([LineFramer.resyncByte] + request.encoded())
        pendingLines.removeAll()
        queuedEvents.removeAll()
        framer = LineFramer()
        sawResync = false
        let deadline = Deadline(after: timeout)
        while true {
            while !pendingLines.isEmpty {
                let line = pendingLines.removeFirst()
                guard case let .response(response)? = try? Message.decode(line) else { continue }
                if response.id == .int(id), case let .success(value) = response.result, value == .int(id) {
                    return id
                }
            }
            try readMore(deadline: deadline, waitingFor: "the sync reply", syncing: true)
        }
    }

    // MARK: - calls

    /// Sends `command` and waits for the reply with its id; returns the
    /// `return` value as received. Events that arrive meanwhile are queued;
    /// replies with other ids are stale and dropped. An error reply throws
    /// `HostError.guest`.
    public func call(_ command: Command) throws(HostError) -> JSON {
        try call(command.name.rawValue, command.request)
    }

    /// The same for balloon-hostd's own commands (its control socket).
    public func call(_ command: AgentCommand) throws(HostError) -> JSON {
        try call(command.name.rawValue, command.request)
    }

    private func call(_ name: String, _ request: (JSON?) -> Request) throws(HostError) -> JSON {
        let id = JSON.int(nextID)
        nextID += 1
        try send(Message.request(request(id)).encoded())
        let deadline = Deadline(after: timeout)
        while true {
            while !pendingLines.isEmpty {
                let line = pendingLines.removeFirst()
                let message: Message
                do { message = try Message.decode(line) } catch { malformedLines += 1; continue }
                switch message {
                case let .event(event):
                    queuedEvents.append(event)
                case let .response(response):
                    if response.id == id {
                        switch response.result {
                        case let .success(value): return value
                        case let .failure(error): throw .guest(command: name, error)
                        }
                    }
                    // An error without an id is the guest refusing a line it
                    // could not read (MalformedMessage, LineTooLong): ours,
                    // since only one request is outstanding.
                    if response.id == nil || response.id == .null, case let .failure(error) = response.result {
                        throw .guest(command: name, error)
                    }
                case .request:
                    continue  // The guest does not send requests; ignore.
                }
            }
            try readMore(deadline: deadline, waitingFor: "the reply to \(name)", syncing: false)
        }
    }

    /// The next event: a queued one, or the next to arrive within `timeout`
    /// (nil: wait forever). Returns nil when the timeout passes first.
    public func nextEvent(timeout: Duration? = nil) throws(HostError) -> Event? {
        let deadline = timeout.map { Deadline(after: $0) } ?? .never
        while true {
            if !queuedEvents.isEmpty { return queuedEvents.removeFirst() }
            while !pendingLines.isEmpty {
                let line = pendingLines.removeFirst()
                guard let message = try? Message.decode(line) else { malformedLines += 1; continue }
                if case let .event(event) = message { return event }
            }
            do {
                try readMore(deadline: deadline, waitingFor: "events", syncing: false)
            } catch let error {
                if case .timeout = error { return nil }
                throw error
            }
        }
    }

    /// Events queued while waiting for replies, oldest first.
    public var pendingEvents: [Event] { queuedEvents }

    /// Drops queued events (e.g. those that arrived before a `set-target`
    /// reply: docs/protocol.md says a reply precedes the events it causes).
    public func discardQueuedEvents() { queuedEvents.removeAll() }

    // MARK: - typed commands

    /// Sends `command` and decodes its reply as `R`.
    public func call<R: ReplyValue>(_ command: Command, as type: R.Type) throws(HostError) -> R {
        try Self.decode(try call(command), as: type, for: command.name)
    }

    /// A reply as `R`; a reply that is not one is `HostError.badReply`.
    public static func decode<R: ReplyValue>(_ value: JSON, as _: R.Type, for command: Command.Name) throws(HostError) -> R {
        do { return try R(json: value) } catch { throw .badReply(command: command.rawValue, detail: error.desc) }
    }

    /// The same for a reply of balloon-hostd's.
    public static func decode<R: ReplyValue>(_ value: JSON, as _: R.Type, for command: AgentCommand.Name) throws(HostError) -> R {
        do { return try R(json: value) } catch { throw .badReply(command: command.rawValue, detail: error.desc) }
    }

    public func info() throws(HostError) -> InfoReply { try call(.info, as: InfoReply.self) }

    public func setTarget(_ bytes: UInt64) throws(HostError) -> SetTargetReply { try call(.setTarget(bytes), as: SetTargetReply.self) }

    public func query() throws(HostError) -> QueryReply { try call(.query, as: QueryReply.self) }

    public func stats() throws(HostError) -> StatsReply { try call(.stats, as: StatsReply.self) }

    /// Asks for `STATS` events every `interval` (`.zero` stops). Returns the
    /// interval the guest confirmed.
    @discardableResult
    public func setStatsInterval(_ interval: Duration) throws(HostError) -> Duration {
        try call(.setStatsInterval(interval), as: StatsIntervalReply.self).interval
    }

    // MARK: - I/O

    private func send(_ bytes: [UInt8]) throws(HostError) {
        do { try HostIO.sendAll(descriptor, bytes) } catch {
            if error.errno == .brokenPipe || error.errno == .connectionReset {
                throw .closed(waitingFor: "a write to go through")
            }
            throw .io(error)
        }
    }

    /// Reads once (waiting up to the deadline) and frames what came.
    private func readMore(deadline: Deadline, waitingFor what: String, syncing: Bool) throws(HostError) {
        let ready: Bool
        do { ready = try HostIO.waitReadable(descriptor, timeout: deadline.remaining) } catch {
            throw .io(error)
        }
        if !ready {
            if deadline.expired { throw .timeout(waitingFor: what, seconds: timeout.seconds) }
            return  // EINTR or rounding: try again.
        }
        let n: Int
        do { n = try HostIO.read(descriptor, into: readBuffer) } catch {
            if error.errno == .connectionReset { throw .closed(waitingFor: what) }
            throw .io(error)
        }
        if n == 0 { throw .closed(waitingFor: what) }
        for item in framer.feed(UnsafeRawBufferPointer(rebasing: readBuffer[..<n])) {
            switch item {
            case let .line(line):
                // During sync, everything before the guest's 0xFF is stale.
                if !syncing || sawResync { pendingLines.append(line) }
            case .resync:
                sawResync = true
            case .tooLong:
                malformedLines += 1
            }
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonConfig
import BalloonProtocol
import BalloonSystem
import Logging

/// Why the daemon's channel failed.
public enum ChannelError: Error, CustomStringConvertible {
    /// The channel could not be opened or watched.
    case open(ChannelSpec, SystemError)
    /// A reload's new channel failed and the previous one could not be had
    /// back either: no host can reach the daemon.
    case lost(ChannelSpec, SystemError)

    public var description: String {
        switch self {
        case let .open(spec, error): "cannot open \(spec): \(error)"
        case let .lost(spec, error): "lost the channel \(spec) (reload): \(error)"
        }
    }
}

/// The daemon's side of the channel: the endpoint (a listening unix or
/// vsock socket, or a virtio-serial port), the one host connection (a newer
/// one replaces an older; vsock peers filtered by CID), and a virtio port's
/// attach and detach without spinning (docs/architecture.md).
final class HostLink {
    enum Token: UInt64 { case listener = 200, connection, reattachTimer }
    /// A safety net for a SIGIO that did not come.
    static let reattachInterval: Duration = .seconds(5)

    private let registry: EventRegistry
    var logger: Logger
    var allowedCIDs: VsockPeers
    private(set) var spec: ChannelSpec?
    private(set) var endpoint: ChannelEndpoint?
    private(set) var connection: LineConnection?
    /// For a virtio port: whether the port is watched (a host is attached).
    private(set) var portAttached = false
    private let reattachTimer: TimerDescriptor
    /// Each line (or framing event) a host sends, in order.
    var onItem: (LineFramer.Item) -> Void = { _ in }
    /// The host went away or was replaced: the reason, for the log.
    var onHostGone: (String) -> Void = { _ in }
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    /// What the host sent while a chunk locked (`readDuringLock`), handed
    /// to `onItem` in order before anything read later (`dispatchHeld`),
    /// and how that reading ended if the host went away meanwhile.
    var held: [LineFramer.Item] = []
    var heldEnd: HeldEnd?
    enum HeldEnd { case closed, failed(SystemError) }

    init(registry: EventRegistry, logger: Logger, allowedCIDs: VsockPeers) throws(SystemError) {
        self.registry = registry
        self.logger = logger
        self.allowedCIDs = allowedCIDs
        reattachTimer = try TimerDescriptor()
        try registry.add(reattachTimer.descriptor, events: .readable, token: Token.reattachTimer.rawValue)
    }

    deinit { scratch.deallocate() }

    var label: String { endpoint?.label ?? "-" }

    var isVirtioPort: Bool {
        if case .virtioSerial? = endpoint { return true }
        return false
    }

    /// For `systemctl status`.
    var hostState: String {
        if isVirtioPort { return portAttached ? "attached" : "not attached" }
        return connection != nil ? "connected" : "not connected"
    }

    var hasPendingOutput: Bool { connection?.hasPendingOutput ?? false }

    func open(_ spec: ChannelSpec) throws(ChannelError) {
        let endpoint: ChannelEndpoint
        do { endpoint = try ChannelEndpoint.open(spec) } catch { throw .open(spec, error) }
        do { try adopt(endpoint, spec) } catch {
            endpoint.close()
            throw .open(spec, error)
        }
    }

    /// A reload's new channel. If it cannot be opened, the previous one is
    /// kept (`.open`); if even that cannot be watched again, it is opened
    /// afresh, and only if that fails too the channel is `.lost`.
    func switchChannel(to newSpec: ChannelSpec) throws(ChannelError) {
        let previous = endpoint, previousSpec = spec
        detach()
        do {
            try open(newSpec)
            previous?.close()
            return
        } catch let failure {
            guard let previous, let previousSpec else { throw failure }
            do {
                try adopt(previous, previousSpec)
            } catch {
                logger.error("cannot watch \(previous.label) again after the failed reload: \(error); reopening it")
                detach()
                previous.close()
                do { try open(previousSpec) } catch { throw .lost(previousSpec, error.cause) }
            }
            throw failure
        }
    }

    private func adopt(_ new: ChannelEndpoint, _ newSpec: ChannelSpec) throws(SystemError) {
        switch new {
        case let .listener(fd, _):
            try registry.add(fd, events: .readable, token: Token.listener.rawValue)
        case let .virtioSerial(fd, path):
            connection = LineConnection(descriptor: fd, peer: path)
            portAttached = false
        }
        endpoint = new
        spec = newSpec
        checkPortAttached()
    }

    private func detach() {
        forgetHeld()
        connection?.unregister()
        if case let .listener(fd, _)? = endpoint { registry.remove(fd) }
        connection = nil
        portAttached = false
        disarmReattach()
        endpoint = nil
        spec = nil
    }

    /// Handles a descriptor of the link that is ready; false for other tokens.
    func handle(token: UInt64, events: EpollEvents) -> Bool {
        switch Token(rawValue: token) {
        case .listener: acceptConnections()
        case .connection: serviceConnection(events)
        case .reattachTimer:
            _ = reattachTimer.acknowledge()
            checkPortAttached()
        case nil: return false
        }
        return true
    }

    private func acceptConnections() {
        guard case let .listener(listener, spec)? = endpoint else { return }
        while true {
            let accepted: (Descriptor, String)?
            do {
                if case .vsock = spec {
                    guard let (fd, cid) = try StreamSocket.acceptVsock(listener) else { return }
                    guard allowedCIDs.allows(cid) else {
                        logger.warning("refused a vsock connection from CID \(cid) (VsockAllowedCIDs=)")
                        fd.close()
                        continue
                    }
                    accepted = (fd, "vsock CID \(cid)")
                } else {
                    accepted = try StreamSocket.accept(listener).map { ($0, "unix client") }
                }
            } catch {
                logger.error("accept failed: \(error)")
                return
            }
            guard let (fd, peer) = accepted else { return }
            if let old = connection {
                logger.info("a newer host connection replaces the previous one")
                onHostGone("a newer host connection replaced the previous one")
                forgetHeld()
                old.unregister()
                old.descriptor.close()
            }
            let new = LineConnection(descriptor: fd, peer: peer)
            connection = new
            do {
                try new.register(in: registry, token: Token.connection.rawValue, events: [.readable, .peerClosed])
                logger.info("host connected", metadata: ["peer": "\(peer)"])
            } catch {
                logger.error("cannot watch the new connection: \(error)")
                fd.close()
                connection = nil
            }
        }
    }

    /// virtio-serial: while no host is attached the port reports HUP without
    /// end, so it leaves epoll and comes back on SIGIO (or the slow timer).
    func checkPortAttached() {
        guard case let .virtioSerial(fd, path)? = endpoint, let connection, !portAttached else { return }
        guard VirtioSerialPort.hostAttached(fd) else {
            armReattach()
            return
        }
        do {
            // Watched for writability too if output is pending.
            try connection.register(in: registry, token: Token.connection.rawValue, events: .readable)
            portAttached = true
            disarmReattach()
            logger.info("host attached", metadata: ["port": "\(path)"])
        } catch {
            logger.error("cannot watch \(path): \(error)")
            armReattach()
        }
    }

    private func armReattach() {
        do { try reattachTimer.arm(after: Self.reattachInterval, repeating: true) } catch {
            logger.error("cannot arm the virtio port's re-attach timer (SIGIO still works): \(error)")
        }
    }

    private func disarmReattach() {
        do { try reattachTimer.disarm() } catch {
            logger.warning("cannot disarm the virtio port's re-attach timer (it only re-checks): \(error)")
        }
    }

    func hostGone() {
        forgetHeld()
        guard let connection else { return }
        onHostGone("the host went away")
        connection.unregister()
        connection.reset()
        if isVirtioPort {
            portAttached = false
            logger.info("host detached", metadata: ["port": "\(connection.peer)"])
            armReattach()
        } else {
            logger.info("host disconnected", metadata: ["peer": "\(connection.peer)"])
            connection.descriptor.close()
            self.connection = nil
        }
    }

    private func serviceConnection(_ events: EpollEvents) {
        dispatchHeld()
        guard let connection, connection.isRegistered else { return }
        if events.contains(.writable) {
            do { try connection.flush() } catch {
                logger.warning("write to host failed: \(error)")
                hostGone()
                return
            }
        }
        guard !events.isDisjoint(with: [.readable, .hangup, .error, .peerClosed]) else { return }
        // Bounded per turn so a flood cannot starve the balloon's progress.
        for _ in 0..<16 {
            let result: LineConnection.ReadResult
            do {
                result = try connection.readAvailable(into: scratch)
            } catch {
                logger.warning("read from host failed: \(error)")
                hostGone()
                return
            }
            switch result {
            case .wouldBlock: return
            case .closed:
                hostGone()
                return
            case let .items(items):
                for item in items { onItem(item) }
                if self.connection !== connection { return }
            }
        }
    }

    /// Sends bytes to the host; without one (a virtio port nobody attached)
    /// they are dropped: a host learns the state with `query` after `sync`.
    func send(_ bytes: [UInt8]) {
        guard let connection, connection.isRegistered else { return }
        do {
            if try !connection.send(bytes) {
                logger.warning("host is not reading; dropped \(connection.maxOutboxBytes) bytes of output")
                connection.discardOutput()
            }
        } catch {
            // A failed write, or writability that cannot be watched (the
            // output would stall): either way this host is gone.
            logger.warning("write to host failed: \(error)")
            hostGone()
        }
    }

    /// Serves the connection alone (shutdown) until `done` or the deadline,
    /// on an epoll of its own so the loop's other descriptors cannot spin it.
    func serve(until done: () -> Bool, within limit: Duration) {
        guard let connection, connection.isRegistered else { return }
        let local: Epoll
        let fd = connection.descriptor, token = Token.connection.rawValue
        do {
            local = try Epoll()
            try local.add(fd, events: .readable, token: token)
        } catch {
            logger.warning("cannot wait for the host at shutdown: \(error)")
            return
        }
        defer { local.descriptor.close() }
        let deadline = SystemClock.monotonic() + limit
        while !done(), self.connection === connection, connection.isRegistered {
            let now = SystemClock.monotonic()
            guard now < deadline else { return }
            let ready: [(token: UInt64, events: EpollEvents)]
            do {
                // Writability is level-triggered: watched only while output is pending.
                try local.modify(fd, events: connection.hasPendingOutput ? [.readable, .writable] : .readable, token: token)
                ready = try local.wait(timeout: min(deadline - now, .milliseconds(100)))
            } catch {
                logger.warning("cannot wait for the host at shutdown: \(error)")
                return
            }
            for (_, events) in ready { serviceConnection(events) }
        }
    }

    func close() {
        let endpoint = self.endpoint
        detach()
        endpoint?.close()
    }
}

extension ChannelError {
    var cause: SystemError {
        switch self {
        case let .open(_, e), let .lost(_, e): e
        }
    }
}

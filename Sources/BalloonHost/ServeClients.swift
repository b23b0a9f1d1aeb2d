// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonProtocol
import BalloonSystem

// serve's control clients: the control socket speaks the guest's protocol;
// serve answers sync and serve-status itself, forwards the rest to the guest
// and broadcasts the guest's events. Each client has its own outbox.

extension ServeLoop {
    final class Client {
        let id: UInt64
        let connection: LineConnection
        var fd: Descriptor { connection.descriptor }
        init(id: UInt64, fd: Descriptor, outboxLimit: Int) {
            self.id = id
            connection = LineConnection(descriptor: fd, peer: "control client \(id)", maxOutboxBytes: outboxLimit)
        }
    }


    func acceptClients() {
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
            let client = Client(id: nextClientID, fd: fd, outboxLimit: options.clientOutboxLimit)
            nextClientID += 1
            do { try client.connection.register(in: epoll, token: Self.token(.client, client.id), events: .readable) } catch {
                fd.close()
                continue
            }
            clients[client.id] = client
        }
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
                    clientRequest(client, request)
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
        switch command {
        case let .sync(id):
            enqueue(client, [LineFramer.resyncByte] + Message.response(Response(id: request.id, result: .success(id))).encoded())
        case .serveStatus:
            send(client, Response(id: request.id, reply: currentStatus))
        case .framesAck, .setFrameReporting:
            fail(ProtocolError(.invalidParameter, "\(command.name.rawValue) is owned by balloonctl serve (it enables frame reporting when it has a memory backend)"))
        case .info, .setTarget, .query, .stats, .setStatsInterval, .rescanFrames, .setFreeMemoryReporting:
            guard let link, link.synced else { return fail(ProtocolError(.genericError, ServeCommand.notConnected)) }
            var target: UInt64?
            var previous: UInt64?
            if case let .setTarget(t) = command {
                // Recorded now, so a re-apply racing with this call uses it;
                // restored if the guest refuses it.
                target = t
                previous = status.desiredTarget
                status.desiredTarget = t
            }
            guestRequest(command, for: .forward(client: client.id, id: request.id, target: target, previousDesired: previous))
        }
    }

    func replyToClient(_ clientID: UInt64, _ response: Response) {
        guard let client = clients[clientID] else { return }
        send(client, response)
    }

    func send(_ client: Client, _ response: Response) {
        enqueue(client, Message.response(response).encoded())
    }

    func broadcast(_ bytes: [UInt8]) {
        for client in Array(clients.values) { enqueue(client, bytes) }
    }

    func enqueue(_ client: Client, _ bytes: [UInt8]) {
        guard clients[client.id] != nil else { return }
        do {
            guard try client.connection.send(bytes) else {
                status.clientsDropped += 1
                return drop(client, reason: "not reading (more than \(options.clientOutboxLimit) bytes unsent)")
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

    func drop(_ client: Client, reason: String?) {
        guard clients.removeValue(forKey: client.id) != nil else { return }
        if let reason { options.log("control client \(client.id) dropped: \(reason)") }
        client.connection.unregister()
        client.fd.close()
    }
}

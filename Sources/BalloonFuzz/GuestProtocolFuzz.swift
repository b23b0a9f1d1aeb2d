// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// What the guest daemon does with bytes from its host: frame lines, decode
/// messages, check requests into commands. Invariants: the framer's bulk and
/// byte-wise feeds agree and never buffer past their bound; every decoded
/// message re-encodes to itself; every accepted command (guest, serve and
/// agent scopes) survives its own request's round trip on the wire.
public enum GuestProtocolFuzz {
    /// Small enough that the fuzzer reaches the overlong-line path.
    static let maxLineBytes = 1024

    public static func run(_ data: UnsafeRawBufferPointer) {
        var bulk = LineFramer(maxLineBytes: maxLineBytes)
        var bytewise = LineFramer(maxLineBytes: maxLineBytes)
        // Two reads, split where the first byte says, as a socket might deliver them.
        let cut = data.isEmpty ? 0 : Int(data[0]) % (data.count + 1)
        var items = bulk.feed(UnsafeRawBufferPointer(rebasing: data[..<cut]))
        items += bulk.feed(UnsafeRawBufferPointer(rebasing: data[cut...]))
        let slow = bytewise.feed(Array(data))
        precondition(items == slow, "LineFramer: bulk and byte-wise feeds disagree")
        precondition(bulk.bufferedBytes <= maxLineBytes && bulk.bufferedBytes == bytewise.bufferedBytes)

        for case let .line(line) in items {
            precondition(line.count <= maxLineBytes && !line.contains(0x0A) && !line.contains(LineFramer.resyncByte))
            guard let message = try? Message.decode(line) else { continue }
            roundTrip(message)
            guard case let .request(request) = message else { continue }
            if let command = try? Command(request) { check(command, id: request.id, scope: .guest) }
            if let command = try? Command(request, scope: .serveControl) { check(command, id: request.id, scope: .serveControl) }
            if AgentCommand.names(request), let command = try? AgentCommand(request) {
                guard case let .request(again)? = try? Message.decode(dropNewline(Message.request(command.request(id: request.id)).encoded())),
                      let back = try? AgentCommand(again)
                else { preconditionFailure("AgentCommand \(command) does not survive its own request") }
                precondition(back == command && again.id == request.id)
            }
        }
    }

    /// A decoded message, encoded and decoded again, is the same message.
    static func roundTrip(_ message: Message) {
        let wire = message.encoded()
        precondition(wire.last == 0x0A && wire.dropLast().allSatisfy { $0 != 0x0A }, "an encoded message is one line")
        guard let again = try? Message.decode(dropNewline(wire)) else {
            preconditionFailure("Message.encoded() does not decode: \(String(decoding: wire, as: UTF8.self))")
        }
        precondition(again == message, "message round trip differs: \(String(decoding: wire, as: UTF8.self))")
    }

    static func check(_ command: Command, id: JSON?, scope: Command.Scope) {
        guard case let .request(again)? = try? Message.decode(dropNewline(Message.request(command.request(id: id)).encoded())),
              let back = try? Command(again, scope: scope)
        else { preconditionFailure("Command \(command) does not survive its own request") }
        precondition(back == command && again.id == id, "command round trip differs: \(command) → \(back)")
    }

    static func dropNewline(_ wire: [UInt8]) -> ArraySlice<UInt8> { wire.dropLast() }
}

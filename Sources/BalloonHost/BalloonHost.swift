// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem

// The host side of the balloond channel (docs/protocol.md): connecting to a
// guest over a unix socket, vsock or Firecracker/Cloud Hypervisor hybrid vsock
// (`GuestAddress`), a session that syncs and calls commands (`GuestSession`),
// typed replies (`GuestInfo`, `TargetReply`, `BalloonStatus`, `GuestStats`),
// size parsing for the CLI (`HostSize`) and text rendering (`HostFormat`).

/// Everything that can go wrong talking to a guest, each with a message fit
/// for a user (`balloonctl: <description>`).
public enum HostError: Error, Sendable, Equatable, CustomStringConvertible {
    /// connect() failed: no such socket, refused, no vsock device, ...
    case connect(address: String, SystemError)
    /// The Firecracker / Cloud Hypervisor `CONNECT <port>` handshake failed.
    case handshake(address: String, detail: String)
    /// Nothing (or not the awaited message) came within the timeout.
    case timeout(waitingFor: String, seconds: Double)
    /// The guest (or the VMM) closed the stream.
    case closed(waitingFor: String)
    /// A read or write failed after the connection was up.
    case io(SystemError)
    /// The guest answered with `{"error":{"class":..,"desc":..}}`.
    case guest(command: String, ProtocolError)
    /// The reply did not have the shape docs/protocol.md promises.
    case badReply(command: String, detail: String)
    /// A bad command-line value (sizes, addresses).
    case usage(String)

    public var description: String {
        switch self {
        case let .connect(address, error):
            return "cannot connect to \(address): \(error.cause)"
        case let .handshake(address, detail):
            return "hybrid vsock handshake with \(address) failed: \(PrintableText.escape(detail))"
        case let .timeout(what, seconds):
            return "the guest did not answer within \(HostFormat.seconds(seconds)) (waiting for \(what))"
        case let .closed(what):
            return "the guest closed the connection (waiting for \(what))"
        case let .io(error):
            return "channel I/O failed: \(error)"
        case let .guest(command, error):
            return "\(command) failed: \(error)"  // ProtocolError escapes the guest's text
        case let .badReply(command, detail):
            return "unexpected reply to \(command): \(PrintableText.escape(detail))"
        case let .usage(message):
            return message
        }
    }
}

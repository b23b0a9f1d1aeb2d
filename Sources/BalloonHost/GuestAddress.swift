// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem

/// Where a guest's balloond channel is reachable from the host.
public enum GuestAddress: Sendable, Equatable, CustomStringConvertible {
    /// A unix socket: QEMU's `-chardev socket,path=…` (virtio-serial) or a
    /// balloond listening on a unix socket (development, tests).
    case unix(path: String)
    /// A vsock stream to the guest's CID and port.
    case vsock(cid: UInt32, port: UInt32)
    /// Firecracker / Cloud Hypervisor: the VMM's unix socket, then
    /// `CONNECT <port>\n` → `OK <n>\n`.
    case hybridVsock(path: String, port: UInt32)

    public var description: String {
        switch self {
        case let .unix(path): return path
        case let .vsock(cid, port): return "vsock \(cid):\(port)"
        case let .hybridVsock(path, port): return "\(path) (hybrid vsock port \(port))"
        }
    }

    /// `CID:PORT`, both decimal.
    public static func parseVsock(_ text: String) throws(HostError) -> GuestAddress {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let cid = UInt32(parts[0]), let port = UInt32(parts[1]) else {
            throw .usage("invalid vsock address \"\(text)\": expected CID:PORT, e.g. 3:7468")
        }
        return .vsock(cid: cid, port: port)
    }

    /// `PATH:PORT`; the port follows the last colon, so paths may contain colons.
    public static func parseHybridVsock(_ text: String) throws(HostError) -> GuestAddress {
        guard let colon = text.lastIndex(of: ":") else {
            throw .usage("invalid hybrid vsock address \"\(text)\": expected PATH:PORT, e.g. /run/fc/v.sock:7468")
        }
        let path = String(text[..<colon])
        guard !path.isEmpty, let port = UInt32(text[text.index(after: colon)...]) else {
            throw .usage("invalid hybrid vsock address \"\(text)\": expected PATH:PORT, e.g. /run/fc/v.sock:7468")
        }
        return .hybridVsock(path: path, port: port)
    }

    /// Connects; the result is a blocking stream that carries the protocol.
    public func connect(timeout: Duration = .seconds(5)) throws(HostError) -> Descriptor {
        switch self {
        case let .unix(path):
            do { return try StreamSocket.connectUnix(path: path) } catch { throw .connect(address: path, error) }
        case let .vsock(cid, port):
            do { return try StreamSocket.connectVsock(cid: cid, port: port) } catch {
                throw .connect(address: "vsock \(cid):\(port)", error)
            }
        case let .hybridVsock(path, port):
            let fd: Descriptor
            do { fd = try StreamSocket.connectUnix(path: path) } catch { throw .connect(address: path, error) }
            try HybridVsock.handshake(fd, path: path, port: port, timeout: timeout)
            return fd
        }
    }
}

/// The Firecracker / Cloud Hypervisor host-initiated vsock handshake.
public enum HybridVsock {
    /// The longest acknowledgement line accepted (`OK 4294967295\n` is 14).
    static let maxLine = 128

    /// Writes `CONNECT <port>\n` and reads exactly one line, byte by byte so
    /// nothing of the guest's stream is consumed; it must be `OK <n>`.
    /// Returns `n` (the VMM's host-side port number).
    @discardableResult
    public static func handshake(_ fd: Descriptor, path: String, port: UInt32, timeout: Duration) throws(HostError) -> UInt32 {
        let address = "\(path) port \(port)"
        do { try HostIO.sendAll(fd, Array("CONNECT \(port)\n".utf8)) } catch { throw .handshake(address: address, detail: "\(error)") }
        let deadline = Deadline(after: timeout)
        var line: [UInt8] = []
        let one = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
        defer { one.deallocate() }
        while true {
            let ready: Bool
            do { ready = try HostIO.waitReadable(fd, timeout: deadline.remaining) } catch {
                throw .handshake(address: address, detail: "\(error)")
            }
            if !ready {
                guard deadline.expired else { continue }
                throw .handshake(address: address, detail: "no answer to CONNECT \(port) within \(HostFormat.seconds(timeout.seconds))")
            }
            let n: Int
            do { n = try HostIO.read(fd, into: one) } catch {
                throw .handshake(address: address, detail: "\(error)")
            }
            if n == 0 {
                let got = line.isEmpty ? "" : ", after \(quoted(line))"
                throw .handshake(
                    address: address,
                    detail: "the VMM closed the connection\(got) (is balloond listening on vsock port \(port) in the guest?)")
            }
            let byte = one[0]
            if byte == 0x0A { break }
            line.append(byte)
            if line.count > maxLine { throw .handshake(address: address, detail: "expected \"OK <n>\", got \(quoted(line))…") }
        }
        if line.last == 0x0D { line.removeLast() }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("OK "), let n = UInt32(text.dropFirst(3)) else {
            throw .handshake(address: address, detail: "expected \"OK <n>\", got \(quoted(line))")
        }
        return n
    }

    static func quoted(_ bytes: [UInt8]) -> String {
        JSON.string(String(decoding: bytes, as: UTF8.self)).serialized()
    }
}

/// A point on the monotonic clock by which something must happen.
public struct Deadline: Sendable {
    public let instant: ContinuousClock.Instant
    public init(after duration: Duration) { instant = ContinuousClock.now.advanced(by: duration) }
    public init(_ instant: ContinuousClock.Instant) { self.instant = instant }
    /// Never expires.
    public static var never: Deadline { Deadline(after: .seconds(100 * 365 * 86400)) }

    public var expired: Bool { ContinuousClock.now >= instant }

    /// Time left, never negative.
    public var remaining: Duration {
        let left = ContinuousClock.now.duration(to: instant)
        return left < .zero ? .zero : left
    }

}

extension Duration {
    /// The duration in seconds, as a Double (for messages).
    public var seconds: Double {
        let (s, attos) = components
        return Double(s) + Double(attos) / 1e18
    }

    /// A duration from seconds given as a Double (command-line values).
    public static func secondsValue(_ value: Double) -> Duration {
        .milliseconds(Int64((value * 1000).rounded()))
    }
}

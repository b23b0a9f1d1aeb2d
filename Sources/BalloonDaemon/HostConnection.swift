import BalloonProtocol
import BalloonSystem
import Glibc

/// One attached host: bytes in through the line framer, bytes out through a
/// bounded outbox flushed as the descriptor allows.
final class HostConnection {
    /// A host that stops reading must not grow the daemon without bound.
    static let maxOutboxBytes = 4 << 20

    let descriptor: Descriptor
    let peer: String
    var framer = LineFramer()
    private var outbox: [UInt8] = []
    private var outboxOffset = 0

    init(descriptor: Descriptor, peer: String) {
        self.descriptor = descriptor
        self.peer = peer
    }

    var hasPendingOutput: Bool { outboxOffset < outbox.count }

    enum ReadResult { case items([LineFramer.Item]), closed, wouldBlock }

    /// Reads what is there; `closed` on EOF (for a virtio port: no host).
    func readAvailable(into scratch: UnsafeMutableRawBufferPointer) throws(SystemError) -> ReadResult {
        guard let n = try descriptor.read(into: scratch) else { return .wouldBlock }
        if n == 0 { return .closed }
        return .items(framer.feed(UnsafeRawBufferPointer(rebasing: scratch[..<n])))
    }

    /// Queues bytes and writes as much as the descriptor takes now. Returns
    /// false if the outbox overflowed (the caller drops the connection).
    func send(_ bytes: [UInt8]) throws(SystemError) -> Bool {
        if outboxOffset > 0, outboxOffset == outbox.count {
            outbox.removeAll(keepingCapacity: true)
            outboxOffset = 0
        }
        outbox.append(contentsOf: bytes)
        try flush()
        return outbox.count - outboxOffset <= Self.maxOutboxBytes
    }

    /// Writes pending output until the descriptor would block.
    func flush() throws(SystemError) {
        while outboxOffset < outbox.count {
            let offset = outboxOffset
            let written = try descriptor.write(outbox.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[offset...]) })
            guard let written, written > 0 else { return }
            outboxOffset += written
        }
        outbox.removeAll(keepingCapacity: outbox.capacity <= 65536)
        outboxOffset = 0
    }

    func discardOutput() {
        outbox.removeAll()
        outboxOffset = 0
    }
}

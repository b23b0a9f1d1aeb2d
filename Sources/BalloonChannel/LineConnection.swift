// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem

/// Where a loop watches descriptors: `Epoll`, or a test's wrapper around it
/// that can fail on cue.
package protocol EventRegistry: AnyObject {
    func add(_ fd: Descriptor, events: EpollEvents, token: UInt64) throws(SystemError)
    func modify(_ fd: Descriptor, events: EpollEvents, token: UInt64) throws(SystemError)
    func remove(_ fd: Descriptor)
}

extension Epoll: EventRegistry {}

/// One peer speaking lines: bytes in through a `LineFramer`, bytes out
/// through a bounded outbox flushed as the descriptor allows. While output
/// is pending the descriptor is watched for writability too, and only then.
/// The guest daemon's host connection; the host side can use it the same way.
package final class LineConnection {
    /// A peer that stops reading must not grow this process without bound.
    package static let defaultMaxOutboxBytes = 4 << 20

    package let descriptor: Descriptor
    package let peer: String
    package let maxOutboxBytes: Int
    package private(set) var framer: LineFramer
    private let maxLineBytes: Int
    private var outbox: [UInt8] = []
    private var outboxOffset = 0

    private var registry: EventRegistry?
    private var token: UInt64 = 0
    private var events: EpollEvents = []
    /// Whether the registry watches for writability now.
    private var watchingWritable = false

    package init(descriptor: Descriptor, peer: String, maxOutboxBytes: Int = LineConnection.defaultMaxOutboxBytes, maxLineBytes: Int = LineFramer.defaultMaxLineBytes) {
        self.descriptor = descriptor
        self.peer = peer
        self.maxOutboxBytes = maxOutboxBytes
        self.maxLineBytes = maxLineBytes
        framer = LineFramer(maxLineBytes: maxLineBytes)
    }

    package var hasPendingOutput: Bool { outboxOffset < outbox.count }
    package var isRegistered: Bool { registry != nil }

    /// Starts watching the descriptor for `events` (plus writability while
    /// output is pending).
    package func register(in registry: EventRegistry, token: UInt64, events: EpollEvents) throws(SystemError) {
        let pending = hasPendingOutput
        try registry.add(descriptor, events: pending ? events.union(.writable) : events, token: token)
        self.registry = registry
        self.token = token
        self.events = events
        watchingWritable = pending
    }

    package func unregister() {
        registry?.remove(descriptor)
        registry = nil
        watchingWritable = false
    }

    package enum ReadResult { case items([LineFramer.Item]), closed, wouldBlock }

    /// Reads what is there; `closed` on EOF (for a virtio port: no host).
    package func readAvailable(into scratch: UnsafeMutableRawBufferPointer) throws(SystemError) -> ReadResult {
        guard let n = try descriptor.read(into: scratch) else { return .wouldBlock }
        if n == 0 { return .closed }
        return .items(framer.feed(UnsafeRawBufferPointer(rebasing: scratch[..<n])))
    }

    /// Queues bytes and writes as much as the descriptor takes now. Returns
    /// false if the outbox overflowed (the caller drops the output). Throws
    /// when a write fails or writability cannot be watched: either way the
    /// output would never leave, so the caller gives up on the peer.
    package func send(_ bytes: [UInt8]) throws(SystemError) -> Bool {
        if outboxOffset > 0, outboxOffset == outbox.count {
            outbox.removeAll(keepingCapacity: true)
            outboxOffset = 0
        }
        outbox.append(contentsOf: bytes)
        try flush()
        return outbox.count - outboxOffset <= maxOutboxBytes
    }

    /// Writes pending output until the descriptor would block, then watches
    /// for writability exactly while output remains.
    package func flush() throws(SystemError) {
        while outboxOffset < outbox.count {
            let offset = outboxOffset
            let written = try descriptor.write(outbox.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[offset...]) })
            guard let written, written > 0 else { break }
            outboxOffset += written
        }
        if outboxOffset == outbox.count {
            outbox.removeAll(keepingCapacity: outbox.capacity <= 65536)
            outboxOffset = 0
        }
        try updateWriteInterest()
    }

    private func updateWriteInterest() throws(SystemError) {
        guard let registry, hasPendingOutput != watchingWritable else { return }
        try registry.modify(descriptor, events: hasPendingOutput ? events.union(.writable) : events, token: token)
        watchingWritable = hasPendingOutput
    }

    /// Drops queued output (a spurious writable wake-up then turns the
    /// interest off).
    package func discardOutput() {
        outbox.removeAll()
        outboxOffset = 0
    }

    /// Forgets output and any partial line: the peer is gone, the descriptor
    /// stays (a virtio port waits for the next host).
    package func reset() {
        discardOutput()
        framer = LineFramer(maxLineBytes: maxLineBytes)
    }
}

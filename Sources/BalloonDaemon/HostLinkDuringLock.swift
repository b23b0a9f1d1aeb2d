// SPDX-License-Identifier: Apache-2.0
import BalloonChannel
import BalloonProtocol
import BalloonSystem

/// The host's channel while a chunk locks: the loop is inside the lock and
/// cannot answer, but a lower target must still reach it (`Daemon.lockWatch`),
/// so what the host sends is read and kept, and handed on in order once
/// the lock is over.
extension HostLink {
    /// The most items kept during one lock: past it the lock stops reading
    /// and the socket's buffer holds the rest back.
    static let heldLimit = 256

    /// The host connection's descriptor while it is watched: what a chunk
    /// lock also waits on (`Daemon.lockWatch`).
    var lockDescriptor: Descriptor? {
        guard let connection, connection.isRegistered, heldEnd == nil else { return nil }
        return connection.descriptor
    }

    /// Reads what the host sent while a chunk locks and keeps it for
    /// `dispatchHeld` (the loop cannot answer it until the lock is over).
    /// Returns the items just read, and whether the lock may go on
    /// watching: not once the host closed, a read failed or `heldLimit`
    /// items wait.
    func readDuringLock() -> (items: [LineFramer.Item], more: Bool) {
        guard heldEnd == nil, let connection, connection.isRegistered else { return ([], false) }
        var new: [LineFramer.Item] = []
        while held.count + new.count < Self.heldLimit {
            do {
                switch try connection.readAvailable(into: scratch) {
                case .wouldBlock:
                    held += new
                    return (new, true)
                case .closed: heldEnd = .closed
                case let .items(items):
                    new += items
                    continue
                }
            } catch {
                heldEnd = .failed(error)
            }
            break
        }
        held += new
        return (new, false)
    }

    /// Hands what `readDuringLock` kept to `onItem`, in order, then answers
    /// how that reading ended (the host gone). Items of a connection that
    /// went away meanwhile are dropped with it.
    func dispatchHeld() {
        guard let origin = connection else { return forgetHeld() }
        while !held.isEmpty {
            onItem(held.removeFirst())
            if connection !== origin || !origin.isRegistered { return forgetHeld() }
        }
        switch heldEnd {
        case nil: return
        case .closed?: break
        case let .failed(error)?: logger.warning("read from host failed: \(error)")
        }
        hostGone()
    }

    func forgetHeld() {
        held.removeAll()
        heldEnd = nil
    }
}

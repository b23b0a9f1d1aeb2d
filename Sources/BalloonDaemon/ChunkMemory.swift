// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonSystem

/// Where a chunk's memory lives: in this process, or in a holder child.
enum ChunkMemory {
    case local(LockedRegion)
    case holder(HolderProcess)

    var length: Int {
        switch self {
        case let .local(r): r.length
        case let .holder(h): h.length
        }
    }

    var address: UInt {
        switch self {
        case let .local(r): UInt(bitPattern: r.base)
        case let .holder(h): h.address
        }
    }

    var pagemapPath: String {
        switch self {
        case .local: "/proc/self/pagemap"
        case let .holder(h): "/proc/\(h.pid)/pagemap"
        }
    }

    func release() {
        switch self {
        case let .local(r): r.release()
        case let .holder(h): h.release()
        }
    }

    /// Keeps the first `keep` bytes; returns how to give the rest back,
    /// now or later.
    func splitTail(keeping keep: Int) -> (length: Int, release: () -> Void) {
        switch self {
        case let .local(r):
            let before = r.length
            guard let tail = r.detachTail(at: keep) else { return (0, {}) }
            return (before - keep, { tail.release() })
        case let .holder(h):
            // One process holds the whole chunk: the tail goes when the
            // holder is told to shrink (never growing it back).
            return (h.length - keep, { h.shrink(to: min(keep, h.length)) })
        }
    }
}

/// One chunk of the balloon and what was reported about its frames.
final class Chunk {
    var memory: ChunkMemory
    /// Bytes of `memory` still in the balloon (a tail may be waiting to go).
    var length: Int
    let frames = ReportedFrames()

    init(_ memory: ChunkMemory) {
        self.memory = memory
        self.length = memory.length
    }

    var pages: Int { length / PageSize.bytes }
}

extension ReserveError {
    /// Keeps the system error as the cause. mlock(2) fails with ENOMEM past
    /// RLIMIT_MEMLOCK (without CAP_IPC_LOCK) and with EAGAIN when the pages
    /// could not be had; mmap(2) the other way round (EAGAIN: the lock limit).
    /// A holder reports the failed call and its errno, so it maps the same way.
    init(_ error: SystemError) {
        let kind: Kind = switch (error.operation, error.errno) {
        case _ where error.cause == .lockInterrupted || error.cause == .lockYielded: .interrupted
        case ("mlock", .noMemory), ("mmap", .resourceTemporarilyUnavailable): .memoryLockLimit
        case ("mlock", .resourceTemporarilyUnavailable), ("mmap", .noMemory): .outOfMemory
        default: .other
        }
        self.init(kind, cause: error)
    }
}

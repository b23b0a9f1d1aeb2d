// SPDX-License-Identifier: Apache-2.0
/// A monotonic clock: the time since its epoch. The daemon reads
/// CLOCK_MONOTONIC (BalloonSystem's `SystemClock`); tests advance a fake by hand.
public protocol MonotonicClock: AnyObject {
    var now: Duration { get }
}

/// What the controller asks of the memory it does not own: one chunk at a
/// time, all or nothing; given back newest first.
public protocol MemoryReserver: AnyObject {
    /// Bytes held now (the balloon's `actual`).
    var heldBytes: UInt64 { get }
    /// Reserves exactly `bytes` more (a page multiple), or throws and holds nothing new.
    func grow(by bytes: UInt64) throws(ReserveError)
    /// Gives back `bytes` (a page multiple, ≤ heldBytes), newest memory first.
    func shrink(by bytes: UInt64)
}

/// Why the kernel refused memory, keeping the failure below (the reserver's
/// `SystemError`, with the call and errno) as `cause`.
public struct ReserveError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The locked-memory limit (RLIMIT_MEMLOCK) is too low: ENOMEM from
        /// mlock(2), EAGAIN from mmap(2).
        case memoryLockLimit
        /// The guest has no memory to give: EAGAIN from mlock(2) (pages could
        /// not be had), ENOMEM from mmap(2).
        case outOfMemory
        /// A pressure signal, or a lower target from the host, came while
        /// the chunk was being locked: the lock was ended and what it had
        /// taken went back. Not a refusal: the signal or the target is
        /// answered and growth goes on as it says.
        case interrupted
        /// Anything else (a holder that could not be forked, ...).
        case other
    }

    public var kind: Kind
    public var cause: any Error & Sendable & CustomStringConvertible

    public init(_ kind: Kind, cause: any Error & Sendable & CustomStringConvertible) {
        self.kind = kind
        self.cause = cause
    }

    public var description: String {
        switch kind {
        case .memoryLockLimit: "\(cause) (the locked-memory limit is too low: RLIMIT_MEMLOCK, LimitMEMLOCK= in the unit)"
        case .outOfMemory: "\(cause) (the guest has no memory to spare)"
        case .interrupted, .other: "\(cause)"
        }
    }

    public static func == (a: ReserveError, b: ReserveError) -> Bool {
        a.kind == b.kind && a.cause.description == b.cause.description
    }
}

/// The guest's available memory, read fresh before each inflation step.
public protocol MemoryProbe: AnyObject {
    /// MemAvailable in bytes, or nil if it cannot be read.
    func availableBytes() -> UInt64?
}

/// Sizes the controller works within, resolved from the configuration
/// against MemTotal.
public struct BalloonLimits: Sendable, Equatable {
    public var memoryTotal: UInt64
    public var maxBalloon: UInt64
    public var availableFloor: UInt64
    public var chunkSize: UInt64
    public var pageSize: UInt64

    public init(memoryTotal: UInt64, maxBalloon: UInt64, availableFloor: UInt64, chunkSize: UInt64, pageSize: UInt64) {
        self.memoryTotal = memoryTotal
        self.maxBalloon = min(maxBalloon, memoryTotal) / pageSize * pageSize
        self.availableFloor = availableFloor
        self.chunkSize = max(chunkSize / pageSize * pageSize, pageSize)
        self.pageSize = pageSize
    }
}

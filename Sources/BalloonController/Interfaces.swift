/// Milliseconds on a monotonic clock. The daemon uses CLOCK_MONOTONIC; tests
/// use a clock they advance by hand.
public protocol MonotonicClock: AnyObject {
    var milliseconds: UInt64 { get }
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

public struct ReserveError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
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

import BalloonController
import BalloonSystem

/// The balloon's memory: a stack of mlocked anonymous regions, one a chunk.
/// Deflation gives back the newest memory first, shrinking a region's tail
/// when the target falls inside it.
public final class RegionReserver: MemoryReserver {
    public var transparentHugePages: Bool
    /// Touch every page before mlock; mlock populates pages anyway, so this
    /// only exists for measuring the difference.
    public var touchBeforeLock: Bool
    public private(set) var regions: [LockedRegion] = []
    public private(set) var heldBytes: UInt64 = 0

    public init(transparentHugePages: Bool, touchBeforeLock: Bool = false) {
        self.transparentHugePages = transparentHugePages
        self.touchBeforeLock = touchBeforeLock
    }

    public func grow(by bytes: UInt64) throws(ReserveError) {
        do {
            let region = try LockedRegion(length: Int(bytes), hugePages: transparentHugePages, touch: touchBeforeLock)
            regions.append(region)
            heldBytes += bytes
        } catch {
            throw ReserveError(error.description)
        }
    }

    public func shrink(by bytes: UInt64) {
        var remaining = min(bytes, heldBytes)
        while remaining > 0, let last = regions.last {
            let length = UInt64(last.length)
            if length <= remaining {
                last.release()
                regions.removeLast()
                heldBytes -= length
                remaining -= length
            } else {
                last.shrink(to: Int(length - remaining))
                heldBytes -= remaining
                remaining = 0
            }
        }
    }

    public func releaseAll() { shrink(by: heldBytes) }
}

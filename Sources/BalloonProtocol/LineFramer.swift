/// Splits a byte stream into protocol lines (DESIGN §3): one JSON object per
/// line, a 0xFF byte drops any partial line, and a line longer than the bound
/// is reported once and skipped up to its newline instead of buffered.
public struct LineFramer: Sendable {
    public static let resyncByte: UInt8 = 0xFF
    public static let defaultMaxLineBytes = 64 * 1024

    public enum Item: Sendable, Equatable {
        case line([UInt8])
        /// A 0xFF arrived; `dropped` bytes of a partial line were discarded.
        case resync(dropped: Int)
        /// A line exceeded the bound; the rest of it is being skipped.
        case tooLong(limit: Int)
    }

    public let maxLineBytes: Int
    private var pending: [UInt8] = []
    private var skippingOverlong = false

    public init(maxLineBytes: Int = LineFramer.defaultMaxLineBytes) {
        self.maxLineBytes = maxLineBytes
    }

    /// Bytes of an unfinished line held now (for tests and for metrics).
    public var bufferedBytes: Int { pending.count }

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Item] {
        var items: [Item] = []
        for byte in bytes {
            switch byte {
            case LineFramer.resyncByte:
                items.append(.resync(dropped: pending.count))
                pending.removeAll(keepingCapacity: true)
                skippingOverlong = false
            case 0x0A:
                if skippingOverlong {
                    skippingOverlong = false
                } else {
                    if pending.last == 0x0D { pending.removeLast() }
                    if pending.contains(where: { $0 != 0x20 && $0 != 0x09 }) { items.append(.line(pending)) }
                }
                pending.removeAll(keepingCapacity: true)
            default:
                guard !skippingOverlong else { continue }
                if pending.count >= maxLineBytes {
                    items.append(.tooLong(limit: maxLineBytes))
                    pending.removeAll(keepingCapacity: false)
                    skippingOverlong = true
                } else {
                    pending.append(byte)
                }
            }
        }
        return items
    }
}

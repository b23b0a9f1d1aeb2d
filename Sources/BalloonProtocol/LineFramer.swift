// SPDX-License-Identifier: Apache-2.0
/// Splits a byte stream into protocol lines (docs/protocol.md, Framing): one JSON object per
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
    /// A CR just seen and not yet in `pending`: if LF follows it is part of the
    /// terminator (so a line of exactly `maxLineBytes` ends fine with CRLF),
    /// otherwise it is line content.
    private var heldCR = false

    public init(maxLineBytes: Int = LineFramer.defaultMaxLineBytes) {
        self.maxLineBytes = maxLineBytes
    }

    /// Bytes of an unfinished line held now (for tests and for metrics); never
    /// more than `maxLineBytes`.
    public var bufferedBytes: Int { pending.count }

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Item] {
        var items: [Item] = []
        for byte in bytes {
            switch byte {
            case LineFramer.resyncByte:
                items.append(.resync(dropped: pending.count + (heldCR ? 1 : 0)))
                pending.removeAll(keepingCapacity: true)
                heldCR = false
                skippingOverlong = false
            case 0x0A:
                if skippingOverlong {
                    skippingOverlong = false
                } else if pending.contains(where: { $0 != 0x20 && $0 != 0x09 }) {
                    items.append(.line(pending))
                }
                pending.removeAll(keepingCapacity: true)
                heldCR = false
            default:
                guard !skippingOverlong else { continue }
                if heldCR {
                    heldCR = false
                    guard append(0x0D, to: &items) else { continue }
                }
                if byte == 0x0D { heldCR = true } else { append(byte, to: &items) }
            }
        }
        return items
    }

    /// Adds a byte to the line, or reports the line too long and starts skipping it.
    @discardableResult
    private mutating func append(_ byte: UInt8, to items: inout [Item]) -> Bool {
        guard pending.count < maxLineBytes else {
            items.append(.tooLong(limit: maxLineBytes))
            pending.removeAll(keepingCapacity: false)
            skippingOverlong = true
            return false
        }
        pending.append(byte)
        return true
    }
}

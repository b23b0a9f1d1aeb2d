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

    /// Whether a line has begun and not ended (held bytes, a held CR, or an
    /// over-long line being skipped): a host drops a control client that
    /// leaves one open too long.
    public var isMidLine: Bool { !pending.isEmpty || heldCR || skippingOverlong }

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Item] {
        var items: [Item] = []
        // Called from another module this is not specialized: iterating the
        // sequence costs a witness call per byte (for an Array, a heap-allocated
        // accessor frame each), so step through contiguous storage when there is.
        let stepped: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            for byte in buffer { step(byte, &items) }
        }
        if stepped == nil { for byte in bytes { step(byte, &items) } }
        return items
    }

    /// The same for what a read returns, without a generic iterator per
    /// byte: a run of ordinary bytes joins the line in one copy (a host agent
    /// reads a thousand guests' lines a second).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> [Item] {
        var items: [Item] = []
        var i = 0
        while i < bytes.count {
            if !skippingOverlong, !heldCR {
                var end = i
                while end < bytes.count {
                    let b = bytes[end]
                    if b == LineFramer.resyncByte || b == 0x0A || b == 0x0D { break }
                    end += 1
                }
                // Up to the bound in bulk; the byte past it (if any) is
                // stepped, which reports the line too long as byte by byte.
                let run = min(end - i, maxLineBytes - pending.count)
                if run > 0 {
                    pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + run)]))
                    i += run
                    continue
                }
            }
            step(bytes[i], &items)
            i += 1
        }
        return items
    }

    private mutating func step(_ byte: UInt8, _ items: inout [Item]) {
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
            guard !skippingOverlong else { return }
            if heldCR {
                heldCR = false
                guard append(0x0D, to: &items) else { return }
            }
            if byte == 0x0D { heldCR = true } else { append(byte, to: &items) }
        }
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

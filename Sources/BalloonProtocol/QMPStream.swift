// SPDX-License-Identifier: Apache-2.0
/// Splits a QMP input stream into JSON values as QEMU's JSON streamer
/// (qobject/json-streamer.c) does: values are delimited by balancing braces
/// and brackets, not by lines, so several objects on one line and one object
/// over several reads or lines both work; whitespace (space, tab, CR, LF)
/// between values is ignored. QEMU's extensions are accepted: 'single-quoted'
/// strings and the `\'` escape (rewritten to standard JSON before parsing).
///
/// A lexical error (an ASCII control character other than tab, CR and LF,
/// or a byte that never occurs in UTF-8, such as 0xFF) drops the value being
/// read and yields one error, which is how QMP clients force the parser
/// into a known state (docs/interop/qmp-spec.rst). A value larger than the
/// bound yields one error and is skipped up to where its braces balance.
public struct QMPStreamParser: Sendable {
    public enum Item: Sendable, Equatable {
        case value(JSON)
        /// A GenericError's `desc` (QEMU's "JSON parse error, …" family).
        case error(String)
    }

    /// QEMU allows 64 MiB per value; QMP's balloon commands are tiny.
    public static let defaultMaxValueBytes = 1 << 20

    public let maxValueBytes: Int
    /// The value so far, rewritten to standard JSON.
    private var text: [UInt8] = []
    /// Open braces and brackets of the value being read.
    private var depth = 0
    /// The quote of the string being read (`"` or `'`), if any.
    private var quote: UInt8?
    private var escaped = false
    /// A top-level scalar (number, literal) is being read.
    private var scalar = false
    /// Past the size bound: counting braces without keeping the text.
    private var skipping = false

    public init(maxValueBytes: Int = QMPStreamParser.defaultMaxValueBytes) {
        self.maxValueBytes = maxValueBytes
    }

    /// Bytes held for a value not finished yet.
    public var bufferedBytes: Int { text.count }

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Item] {
        var items: [Item] = []
        // Unspecialized across modules (QMPServer), iterating the sequence is
        // a witness call per byte: step through contiguous storage when there is.
        let stepped: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            for byte in buffer { step(byte, &items) }
        }
        if stepped == nil { for byte in bytes { step(byte, &items) } }
        return items
    }

    private static func isWhitespace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    /// Bytes QEMU's lexer refuses anywhere: control characters other than
    /// tab, CR and LF, and bytes that are never part of UTF-8.
    private static func isLexicalError(_ b: UInt8) -> Bool {
        (b < 0x20 && !isWhitespace(b)) || b == 0xC0 || b == 0xC1 || b >= 0xF5
    }

    private mutating func reset() {
        text.removeAll(keepingCapacity: text.capacity <= 65536)
        depth = 0
        quote = nil
        escaped = false
        scalar = false
        skipping = false
    }

    private mutating func step(_ byte: UInt8, _ items: inout [Item]) {
        if Self.isLexicalError(byte) {
            reset()
            items.append(.error("JSON parse error, stray '\(Self.show(byte))'"))
            return
        }
        if quote != nil { return string(byte, &items) }
        if scalar {
            if Self.isWhitespace(byte) || "{}[],:\"'".utf8.contains(byte) {
                finish(&items)
                return step(byte, &items)
            }
            return keep(byte, &items)
        }
        switch byte {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            depth += 1
            keep(byte, &items)
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            guard depth > 0 else {
                items.append(.error("JSON parse error, expecting value"))
                return
            }
            depth -= 1
            keep(byte, &items)
            if depth == 0 { finish(&items) }
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            quote = byte
            keep(UInt8(ascii: "\""), &items)
        default:
            if Self.isWhitespace(byte) {
                if depth > 0 { keep(byte, &items) }
            } else {
                if depth == 0 { scalar = true }
                keep(byte, &items)
            }
        }
    }

    /// Inside a string: `\'` becomes `'`, and in a single-quoted string a
    /// bare `"` becomes `\"`, so the text stays standard JSON.
    private mutating func string(_ byte: UInt8, _ items: inout [Item]) {
        if escaped {
            escaped = false
            if byte != UInt8(ascii: "'") { keep(UInt8(ascii: "\\"), &items) }
            return keep(byte, &items)
        }
        switch byte {
        case UInt8(ascii: "\\"):
            escaped = true
        case quote:
            quote = nil
            keep(UInt8(ascii: "\""), &items)
            if depth == 0 { finish(&items) }
        case UInt8(ascii: "\""):
            keep(UInt8(ascii: "\\"), &items)
            keep(byte, &items)
        default:
            keep(byte, &items)
        }
    }

    private mutating func keep(_ byte: UInt8, _ items: inout [Item]) {
        guard !skipping else { return }
        guard text.count < maxValueBytes else {
            items.append(.error("JSON token size limit exceeded"))
            text.removeAll(keepingCapacity: false)
            skipping = true
            // A top-level scalar or string has no braces to wait for.
            if depth == 0 { reset() }
            return
        }
        text.append(byte)
    }

    /// A complete value: parsed, or reported.
    private mutating func finish(_ items: inout [Item]) {
        let wasSkipping = skipping
        let value = text
        reset()
        guard !wasSkipping else { return }
        do { items.append(.value(try JSON.parse(value))) } catch {
            items.append(.error("JSON parse error, \(error.reason)"))
        }
    }

    private static func show(_ byte: UInt8) -> String {
        byte < 0x80 ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16, uppercase: true)
    }
}

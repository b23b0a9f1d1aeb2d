// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
// Byte-level helpers shared by the /proc parsers. Everything here works on an
// UnsafeBufferPointer<UInt8> so the hot loops do no bounds-checked collection
// indexing and allocate nothing except the key strings the caller asks for.

@usableFromInline
enum ASCII {
    static let newline: UInt8 = 0x0A      // \n
    static let carriageReturn: UInt8 = 0x0D  // \r
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A        // :
    static let equals: UInt8 = 0x3D       // =
    static let dot: UInt8 = 0x2E          // .
    static let zero: UInt8 = 0x30
    static let nine: UInt8 = 0x39
    static let k: UInt8 = 0x6B
    static let B: UInt8 = 0x42

    @inline(__always) static func isBlank(_ b: UInt8) -> Bool { b == space || b == tab }
    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b >= zero && b <= nine }
    /// Printable, non-blank ASCII: the only bytes a /proc key is made of.
    @inline(__always) static func isKeyByte(_ b: UInt8) -> Bool { b > space && b < 0x7F }
}

/// Runs `body` over the bytes as one contiguous buffer, copying only when the
/// collection has no contiguous storage (e.g. a lazy or chained collection).
@inlinable
func withContiguousBytes<C: Collection<UInt8>, R>(
    _ bytes: C, _ body: (UnsafeBufferPointer<UInt8>) -> R
) -> R {
    if let r = bytes.withContiguousStorageIfAvailable(body) { return r }
    return Array(bytes).withUnsafeBufferPointer(body)
}

/// Calls `body(start, end)` for each line in `buf`: `end` excludes the `\n`
/// and any `\r` right before it. A last line without `\n` is included.
@inline(__always)
func forEachLine(_ buf: UnsafeBufferPointer<UInt8>, _ body: (Int, Int) -> Void) {
    guard let base = buf.baseAddress else { return }
    let n = buf.count
    var start = 0
    while start < n {
        // memchr, not a byte loop: the floor check scans /proc/vmstat and
        // /proc/meminfo every second, and this scan was most of its cost.
        let i = memchr(base + start, Int32(ASCII.newline), n - start).map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) - base } ?? n
        var end = i
        if end > start && buf[end - 1] == ASCII.carriageReturn { end -= 1 }
        if end > start { body(start, end) }
        start = i + 1
    }
}

/// Parses an unsigned decimal integer at `i`. Returns nil when there is no
/// digit or when the number does not fit in UInt64 (never traps). Advances `i`
/// past the digits on success.
@inline(__always)
func parseUInt64(_ buf: UnsafeBufferPointer<UInt8>, _ i: inout Int, _ end: Int) -> UInt64? {
    var j = i
    var value: UInt64 = 0
    while j < end, ASCII.isDigit(buf[j]) {
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (a, o2) = m.addingReportingOverflow(UInt64(buf[j] &- ASCII.zero))
        if o1 || o2 { return nil }
        value = a
        j += 1
    }
    if j == i { return nil }
    i = j
    return value
}

private let powersOfTen: [Double] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
]

/// Parses `digits[.digits]` (no sign, no exponent) at `i`. The result is
/// `mantissa / 10^fractionDigits`, which is the correctly rounded Double for
/// the short decimals PSI prints ("1.23" == 1.23). Nil when malformed or when
/// there are more than 19 significant digits.
@inline(__always)
func parseDecimal(_ buf: UnsafeBufferPointer<UInt8>, _ i: inout Int, _ end: Int) -> Double? {
    var j = i
    var mantissa: UInt64 = 0
    var digits = 0
    var fraction = 0
    var seenDot = false
    while j < end {
        let b = buf[j]
        if ASCII.isDigit(b) {
            let (m, o1) = mantissa.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(b &- ASCII.zero))
            if o1 || o2 { return nil }
            mantissa = a
            digits += 1
            if seenDot { fraction += 1 }
        } else if b == ASCII.dot && !seenDot {
            seenDot = true
        } else {
            break
        }
        j += 1
    }
    // Need at least one digit, and "1." is not accepted as a number.
    if digits == 0 || (seenDot && fraction == 0) || fraction >= powersOfTen.count { return nil }
    i = j
    return Double(mantissa) / powersOfTen[fraction]
}

@inline(__always)
func skipBlanks(_ buf: UnsafeBufferPointer<UInt8>, _ i: inout Int, _ end: Int) {
    while i < end && ASCII.isBlank(buf[i]) { i += 1 }
}

/// A key made only of printable, non-blank ASCII, or nil.
@inline(__always)
func makeKey(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> String? {
    if end <= start { return nil }
    var i = start
    while i < end {
        if !ASCII.isKeyByte(buf[i]) { return nil }
        i += 1
    }
    return String(decoding: UnsafeBufferPointer(rebasing: buf[start..<end]), as: UTF8.self)
}

/// Compares buf[start..<end] with an ASCII literal without making a String.
@inline(__always)
func bytesEqual(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ literal: StaticString) -> Bool {
    let n = literal.utf8CodeUnitCount
    if end - start != n { return false }
    let p = literal.utf8Start
    var k = 0
    while k < n {
        if buf[start + k] != p[k] { return false }
        k += 1
    }
    return true
}

// SPDX-License-Identifier: Apache-2.0
/// A memory size as written in the configuration: a number of bytes, or a
/// percentage of `MemTotal` where the key allows it.
///
/// Accepted text: a non-negative decimal number with an optional suffix
/// `K`, `M`, `G` or `T` (powers of 1024, case-insensitive), optionally followed
/// by `B` or `iB` (`512M`, `2GiB`, `1.5G`, `4096`, `4096B`); fractional byte
/// counts are rounded down. A percentage is a number from 0 to 100 followed by
/// `%` (`25%`, `2.5%`).
package enum SizeSpec: Sendable, Equatable, CustomStringConvertible {
    case bytes(UInt64)
    case percent(Double)

    /// Why a text is not a size.
    package enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// Nothing but whitespace.
        case empty
        /// Not a number with an optional K/M/G/T suffix (or percentage).
        case notASize
        /// Starts with a minus sign.
        case negative
        /// Does not fit in 64 bits of bytes.
        case overflow
        /// A well-formed percentage where only sizes are allowed.
        case percentNotAllowed
        /// A percentage above 100.
        case percentOutOfRange

        package var description: String {
            switch self {
            case .empty: return "empty size"
            case .notASize: return "not a size"
            case .negative: return "sizes cannot be negative"
            case .overflow: return "too large (more than 16 EiB)"
            case .percentNotAllowed: return "a percentage is not allowed here"
            case .percentOutOfRange: return "a percentage cannot be more than 100%"
            }
        }
    }

    /// The number of bytes this size stands for on a machine with `memTotal`
    /// bytes of memory. Percentages are rounded down and never exceed `memTotal`.
    package func resolve(memTotal: UInt64) -> UInt64 {
        switch self {
        case .bytes(let value):
            return value
        case .percent(let percent):
            guard percent.isFinite, percent > 0 else { return 0 }
            if percent >= 100 { return memTotal }
            let value = (Double(memTotal) * percent / 100).rounded(.down)
            if value >= Double(memTotal) { return memTotal }
            return UInt64(value)
        }
    }

    /// Parses a size; leading and trailing whitespace is ignored.
    /// Use `try? SizeSpec.parse(...)` where the reason does not matter.
    package static func parse(_ text: some StringProtocol, allowPercent: Bool) throws(ParseError) -> SizeSpec {
        let bytes = trimASCIIWhitespace(Array(text.utf8))
        guard !bytes.isEmpty else { throw .empty }
        if bytes[0] == UInt8(ascii: "-") { throw .negative }

        if bytes.last == UInt8(ascii: "%") {
            let number = bytes.dropLast()
            guard isPlainDecimal(number), let value = Double(String(decoding: number, as: UTF8.self)) else {
                throw .notASize
            }
            guard allowPercent else { throw .percentNotAllowed }
            guard value <= 100 else { throw .percentOutOfRange }
            return .percent(value)
        }

        var index = 0
        while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        guard index > 0 else { throw .notASize }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            let fractionStart = index
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            guard index > fractionStart else { throw .notASize }
        }
        let shift: UInt64
        switch String(decoding: bytes[index...], as: UTF8.self).lowercased() {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        case "t", "tb", "tib": shift = 40
        default: throw .notASize
        }
        // Exact: floor(number × 2^shift), so 1.5G is 1610612736.
        guard let total = scaleDecimal(bytes[0..<index], by: 1 << shift) else { throw .overflow }
        return .bytes(total)
    }

    /// The size in a form `parse` accepts and that parses back to an equal
    /// value: the largest exact unit (`64M`, `1G`, `4096`, `0`) or a percentage
    /// without exponent (`80%`, `2.5%`).
    package var description: String {
        switch self {
        case .bytes(let value):
            if value == 0 { return "0" }
            // The unit from the trailing zero bits, not a loop over (shift,
            // unit) pairs: swift-frontend unrolled that loop into pairs of
            // moves whose order differed between two release builds under
            // load (docs/releasing.md, "Reproducible").
            let units = "KMGT"
            let level = min(value.trailingZeroBitCount / 10, units.count)
            guard level > 0 else { return "\(value)" }
            let unit = units[units.index(units.startIndex, offsetBy: level - 1)]
            return "\(value >> UInt64(10 * level))\(unit)"
        case .percent(let value):
            return plainDecimal(value) + "%"
        }
    }
}

// MARK: - Small text helpers shared by the target

@inline(__always) func isDigit(_ byte: UInt8) -> Bool {
    byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
}

@inline(__always) func isASCIIWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A || byte == 0x0B || byte == 0x0C
}

func trimASCIIWhitespace(_ bytes: [UInt8]) -> [UInt8] {
    var start = 0
    var end = bytes.count
    while start < end, isASCIIWhitespace(bytes[start]) { start += 1 }
    while end > start, isASCIIWhitespace(bytes[end - 1]) { end -= 1 }
    return Array(bytes[start..<end])
}

func trimmed(_ text: some StringProtocol) -> String {
    String(decoding: trimASCIIWhitespace(Array(text.utf8)), as: UTF8.self)
}

/// `digits` or `digits.digits`, nothing else (no sign, exponent, inf or nan).
func isPlainDecimal(_ bytes: ArraySlice<UInt8>) -> Bool {
    var index = bytes.startIndex
    var integerDigits = 0
    while index < bytes.endIndex, isDigit(bytes[index]) { index += 1; integerDigits += 1 }
    guard integerDigits > 0 else { return false }
    if index == bytes.endIndex { return true }
    guard bytes[index] == UInt8(ascii: ".") else { return false }
    index += 1
    var fractionDigits = 0
    while index < bytes.endIndex, isDigit(bytes[index]) { index += 1; fractionDigits += 1 }
    return fractionDigits > 0 && index == bytes.endIndex
}

/// A finite, non-negative Double written without an exponent, in the shortest
/// form that reads back as the same Double: 80 → "80", 2.5 → "2.5",
/// 1e-05 → "0.00001".
func plainDecimal(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
    let text = "\(value)"
    guard let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) else { return text }
    guard let exponent = Int(text[text.index(after: e)...]) else { return text }
    var negative = false
    var digits = ""
    var pointPosition = 0
    var seenPoint = false
    for character in text[..<e] {
        if character == "-" {
            negative = true
        } else if character == "." {
            seenPoint = true
        } else {
            digits.append(character)
            if !seenPoint { pointPosition += 1 }
        }
    }
    pointPosition += exponent
    var result: String
    if pointPosition <= 0 {
        result = "0." + String(repeating: "0", count: -pointPosition) + digits
    } else if pointPosition >= digits.count {
        result = digits + String(repeating: "0", count: pointPosition - digits.count)
    } else {
        let split = digits.index(digits.startIndex, offsetBy: pointPosition)
        result = digits[..<split] + "." + digits[split...]
    }
    while result.contains("."), result.hasSuffix("0") { result.removeLast() }
    if result.hasSuffix(".") { result.removeLast() }
    return (negative ? "-" : "") + result
}

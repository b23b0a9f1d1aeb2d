// SPDX-License-Identifier: Apache-2.0
// The value syntaxes of the configuration, each written once; the key table
// (ConfigKeys.swift) says which key takes which.

/// A bad value's message; the parser adds file, line, section and key.
struct ValueError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

// MARK: - Value parsers

func parseSize(_ value: String, allowPercent: Bool) throws(ValueError) -> SizeSpec {
    let examples = allowPercent ? "use e.g. 512M, 2G or 25%" : "use e.g. 64M or 2G; no percentages"
    do {
        return try SizeSpec.parse(value, allowPercent: allowPercent)
    } catch {
        switch error {
        case .empty, .notASize:
            throw ValueError("\"\(value)\" is not a size (\(examples))")
        case .negative:
            throw ValueError("\"\(value)\" is negative (\(examples))")
        case .overflow:
            throw ValueError("\"\(value)\" is too large (more than 16 EiB)")
        case .percentNotAllowed:
            throw ValueError("\"\(value)\" is a percentage, but this key takes a size (\(examples))")
        case .percentOutOfRange:
            throw ValueError("\"\(value)\" is more than 100%")
        }
    }
}

func parseBool(_ value: String) throws(ValueError) -> Bool {
    switch value.lowercased() {
    case "yes", "true", "on", "1": return true
    case "no", "false", "off", "0": return false
    default: throw ValueError("\"\(value)\" is not a boolean (use yes/no, true/false, on/off or 1/0)")
    }
}

/// Items separated by spaces, tabs and/or commas.
func splitList(_ value: String) -> [Substring] {
    value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," })
}

func parseCIDs(_ value: String) throws(ValueError) -> VsockPeers {
    let items = splitList(value)
    let usage = "use CIDs separated by spaces or commas, e.g. 2, or \"any\""
    if items.count == 1, items[0].lowercased() == "any" { return .any }
    if items.contains(where: { $0.lowercased() == "any" }) {
        throw ValueError("\"any\" cannot be combined with CIDs (\(usage))")
    }
    guard !items.isEmpty else { throw ValueError("\"\(value)\" lists no CID (\(usage))") }
    var cids: [UInt32] = []
    for item in items {
        guard item.utf8.allSatisfy(isDigit), let cid = UInt32(item) else {
            throw ValueError("\"\(item)\" is not a CID (\(usage))")
        }
        guard cid != 0xFFFF_FFFF else {
            throw ValueError("\(item) is VMADDR_CID_ANY; write \"any\" to allow every peer")
        }
        cids.append(cid)
    }
    return .cids(cids)
}

/// `off`, or `some|full STALL WINDOW` with the kernel's limits: a window of
/// 500 ms to 10 s and a stall above 0 and at most the window.
func parseTrigger(_ value: String) throws(ValueError) -> PSITriggerSpec? {
    if value.lowercased() == "off" { return nil }
    let words = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
    let usage = "(use e.g. \"some 50ms 500ms\", \"full 100ms 1s\" or off)"
    guard words.count == 3, let kind = PSITriggerSpec.Kind(rawValue: String(words[0])) else {
        throw ValueError("\"\(value)\" is not a PSI trigger \(usage)")
    }
    guard let stall = parseDuration(String(words[1])), let window = parseDuration(String(words[2])) else {
        throw ValueError("\"\(value)\" is not a PSI trigger: stall and window must be durations \(usage)")
    }
    guard PSITriggerSpec.windowRange.contains(window) else {
        throw ValueError("\"\(value)\": the window must be from 500ms to 10s (the kernel's limits)")
    }
    guard stall > .zero, stall <= window else {
        throw ValueError("\"\(value)\": the stall must be above 0 and at most the window")
    }
    return PSITriggerSpec(kind: kind, stall: stall, window: window)
}

/// A duration-valued key (`Interval=`, `QuietPeriod=`, …): the one place
/// that turns a value into a `Duration` or the key's message. `examples` ends
/// the "not a duration" message; a `minimum` (with what 0 means instead) makes
/// shorter non-zero values an error, `atLeast` any shorter value, 0 too.
func parseInterval(
    _ value: String, examples: String, minimum: (Duration, zeroMeans: String)? = nil, atLeast: Duration? = nil
) throws(ValueError) -> Duration {
    guard let interval = parseDuration(value) else {
        throw ValueError("\"\(value)\" is not a duration (\(examples))")
    }
    if let (least, zeroMeans) = minimum, interval != .zero, interval < least {
        throw ValueError("\"\(value)\" is shorter than the minimum \(least.configMilliseconds)ms (use 0 \(zeroMeans))")
    }
    if let atLeast, interval < atLeast {
        throw ValueError("\"\(value)\" is shorter than the minimum \(renderDuration(atLeast))")
    }
    return interval
}

/// A systemd-style time span, rounded down to the millisecond: `0`, `10s`,
/// `500ms`, `1min`, `1.5s`, `1min 30s`, `2h`; a plain number is seconds.
/// Nil for anything else or on overflow (more than 2^64 - 1 ms).
func parseDuration(_ value: String) -> Duration? {
    parseMilliseconds(value).map(Duration.init(configMilliseconds:))
}

private func parseMilliseconds(_ value: String) -> UInt64? {
    let bytes = Array(value.utf8)
    var index = 0
    var total: UInt64 = 0
    var components = 0
    func skipSpaces() { while index < bytes.count, isASCIIWhitespace(bytes[index]) { index += 1 } }
    skipSpaces()
    while index < bytes.count {
        let numberStart = index
        while index < bytes.count, isDigit(bytes[index]) || bytes[index] == UInt8(ascii: ".") { index += 1 }
        let number = bytes[numberStart..<index]
        guard isPlainDecimal(number) else { return nil }
        skipSpaces()
        let unitStart = index
        while index < bytes.count, (bytes[index] | 0x20) >= UInt8(ascii: "a"), (bytes[index] | 0x20) <= UInt8(ascii: "z") {
            index += 1
        }
        let unit = String(decoding: bytes[unitStart..<index], as: UTF8.self).lowercased()
        let scale: UInt64
        switch unit {
        case "": scale = 1000
        case "ms", "msec": scale = 1
        case "s", "sec", "second", "seconds": scale = 1000
        case "m", "min", "minute", "minutes": scale = 60_000
        case "h", "hr", "hour", "hours": scale = 3_600_000
        default: return nil
        }
        components += 1
        // A unitless number is only allowed on its own.
        if unit.isEmpty {
            skipSpaces()
            guard components == 1, index == bytes.count else { return nil }
        }
        guard let milliseconds = scaleDecimal(number, by: scale) else { return nil }
        let (sum, overflow) = total.addingReportingOverflow(milliseconds)
        guard !overflow else { return nil }
        total = sum
        skipSpaces()
    }
    return components > 0 ? total : nil
}

/// floor(decimal × scale) for `digits[.digits]`, or nil on overflow.
func scaleDecimal(_ number: ArraySlice<UInt8>, by scale: UInt64) -> UInt64? {
    let point = number.firstIndex(of: UInt8(ascii: "."))
    var integer: UInt64 = 0
    for digit in number[..<(point ?? number.endIndex)] {
        let (times10, o1) = integer.multipliedReportingOverflow(by: 10)
        let (sum, o2) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
        guard !o1, !o2 else { return nil }
        integer = sum
    }
    let (whole, o3) = integer.multipliedReportingOverflow(by: scale)
    guard !o3 else { return nil }
    guard let point else { return whole }
    var numerator: UInt64 = 0
    var denominator: UInt64 = 1
    for digit in number[number.index(after: point)...].prefix(19) {
        numerator = numerator * 10 + UInt64(digit - UInt8(ascii: "0"))
        denominator *= 10
    }
    let product = numerator.multipliedFullWidth(by: scale)
    let fraction = denominator.dividingFullWidth((high: product.high, low: product.low)).quotient
    let (total, o4) = whole.addingReportingOverflow(fraction)
    return o4 ? nil : total
}

/// The shortest spelling `parseDuration` reads back as `duration`.
func renderDuration(_ duration: Duration) -> String {
    let milliseconds = duration.configMilliseconds
    if milliseconds == 0 { return "0" }
    if milliseconds % 3_600_000 == 0 { return "\(milliseconds / 3_600_000)h" }
    if milliseconds % 60_000 == 0 { return "\(milliseconds / 60_000)min" }
    if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
    return "\(milliseconds)ms"
}

extension Duration {
    /// Config durations are whole milliseconds that fit in a UInt64.
    init(configMilliseconds milliseconds: UInt64) {
        self = .seconds(Int64(milliseconds / 1000)) + .milliseconds(Int64(milliseconds % 1000))
    }

    /// Whole milliseconds, rounded down (0 for a negative duration).
    var configMilliseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1000 + UInt64(max(attoseconds, 0) / 1_000_000_000_000_000)
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonStats

// balloon-hostd gets a STATS event from every guest every second: with a
// thousand guests, building a JSON tree (an array per object, a String per
// key, a Fields context per nested object) for each one was most of the
// agent's CPU. This reads the line's bytes straight into a StatsReply.
//
// It is a shortcut, not a second wire format: it takes only the plain form
// balloond writes (no string escapes, no exponents, no unknown or repeated
// members) and returns nil for anything else, valid or not, so the caller
// falls back to `Message.decode` and `GuestEvent`, which decide as always.
// Whatever it accepts, those decode to the same StatsReply (tested).

extension StatsReply {
    /// A `STATS` event line (without its newline) read without a JSON tree;
    /// nil when the line is not one in the plain form (then `Message.decode`
    /// decides what it is).
    public init?(statsEventLine line: [UInt8]) {
        guard let reply = line.withUnsafeBufferPointer({ bytes -> StatsReply? in
            var reader = StatsLineReader(bytes: bytes)
            return reader.event()
        }) else { return nil }
        self = reply
    }
}

/// A cursor over one line; every method returns nil or false at the first
/// thing it does not take.
private struct StatsLineReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    // MARK: The message's shape

    /// `{"event":"STATS","data":{…},"timestamp":{…}}` in any member order.
    mutating func event() -> StatsReply? {
        var seen: UInt8 = 0
        var reply: StatsReply?
        var first = true
        guard take(UInt8(ascii: "{")) else { return nil }
        while let key = member(&first) {
            // Any other member ("execute", "return", "id"…) could change what
            // the message is: the general decoder decides.
            if equals(key, "event") {
                guard mark(&seen, 1), let name = string(), equals(name, "STATS") else { return nil }
            } else if equals(key, "data") {
                guard mark(&seen, 2), let data = data() else { return nil }
                reply = data
            } else if equals(key, "timestamp") {
                guard mark(&seen, 4), timestamp() != nil else { return nil }
            } else {
                return nil
            }
        }
        skipWhitespace()
        guard !failed, !first, index == bytes.count, seen & 3 == 3, let reply else { return nil }
        return reply
    }

    /// The event's data: `stats`, `pressure` (optional), `balloon`,
    /// `file-refaults` (optional), `timestamp`.
    mutating func data() -> StatsReply? {
        var seen: UInt8 = 0
        var stats = VirtioStats()
        var pressure: Pressure?
        var balloon: (target: UInt64, actual: UInt64, held: UInt64, floor: UInt64?)?
        var timestamp: Timestamp?
        var fileRefaults: UInt64?
        var first = true
        guard take(UInt8(ascii: "{")) else { return nil }
        while let key = member(&first) {
            if equals(key, "stats") {
                guard mark(&seen, 1), let s = virtioStats() else { return nil }
                stats = s
            } else if equals(key, "pressure") {
                guard mark(&seen, 2) else { return nil }
                if takeNull() { continue }
                guard let p = self.pressure() else { return nil }
                pressure = p
            } else if equals(key, "balloon") {
                guard mark(&seen, 4), let b = self.balloon() else { return nil }
                balloon = b
            } else if equals(key, "timestamp") {
                guard mark(&seen, 8), let t = self.timestamp() else { return nil }
                timestamp = t
            } else if equals(key, "file-refaults") {
                guard mark(&seen, 16) else { return nil }
                if takeNull() { continue }
                guard let v = unsigned() else { return nil }
                fileRefaults = v
            } else {
                return nil
            }
        }
        guard !failed, seen & 1 != 0, let balloon, let timestamp else { return nil }
        return StatsReply(
            stats: stats, pressure: pressure, balloonTarget: balloon.target, balloonActual: balloon.actual,
            freeMemoryHeld: balloon.held, memAvailableFloor: balloon.floor, fileRefaults: fileRefaults, timestamp: timestamp)
    }

    mutating func virtioStats() -> VirtioStats? {
        var stats = VirtioStats()
        var first = true
        guard take(UInt8(ascii: "{")) else { return nil }
        while let key = member(&first) {
            // An unknown stat (a newer guest's) is the general decoder's to ignore.
            guard let stat = Self.stat(named: key, in: bytes), stats[stat] == nil, let value = unsigned() else { return nil }
            stats[stat] = value
        }
        return failed ? nil : stats
    }

    mutating func pressure() -> Pressure? {
        var seen: UInt8 = 0
        var p = Pressure()
        var first = true
        guard take(UInt8(ascii: "{")) else { return nil }
        while let key = member(&first) {
            let isSome = equals(key, "some")
            guard isSome || equals(key, "full"), mark(&seen, isSome ? 1 : 2) else { return nil }
            if takeNull() { continue }
            guard let line = pressureLine() else { return nil }
            if isSome { p.some = line } else { p.full = line }
        }
        return failed ? nil : p
    }

    mutating func pressureLine() -> PressureLine? {
        var seen: UInt8 = 0
        var avg: (Double, Double, Double) = (0, 0, 0)
        var total: UInt64 = 0
        var first = true
        guard take(UInt8(ascii: "{")) else { return nil }
        while let key = member(&first) {
            if equals(key, "total") {
                guard mark(&seen, 8), let t = unsigned() else { return nil }
                total = t
                continue
            }
            let bit: UInt8 = equals(key, "avg10") ? 1 : equals(key, "avg60") ? 2 : equals(key, "avg300") ? 4 : 0
            guard bit != 0, mark(&seen, bit), let d = double() else { return nil }
            switch bit {
            case 1: avg.0 = d
            case 2: avg.1 = d
            default: avg.2 = d
            }
        }
        guard !failed, seen == 15 else { return nil }
        return PressureLine(avg10: avg.0, avg60: avg.1, avg300: avg.2, total: total)
    }

    mutating func balloon() -> (target: UInt64, actual: UInt64, held: UInt64, floor: UInt64?)? {
        var seen: UInt8 = 0
        var values: (target: UInt64, actual: UInt64, held: UInt64, floor: UInt64?) = (0, 0, 0, nil)
        var first = true
        guard take(UInt8(ascii: "{")) else { return nil }
        while let key = member(&first) {
            // Absent or null: a daemon from before the free-memory mode, or
            // before the floor was reported here.
            if equals(key, "free-memory-held") {
                guard mark(&seen, 4) else { return nil }
                if takeNull() { continue }
                guard let v = unsigned() else { return nil }
                values.held = v
                continue
            }
            if equals(key, "mem-available-floor") {
                guard mark(&seen, 8) else { return nil }
                if takeNull() { continue }
                guard let v = unsigned() else { return nil }
                values.floor = v
                continue
            }
            let isTarget = equals(key, "target")
            guard isTarget || equals(key, "actual"), mark(&seen, isTarget ? 1 : 2), let v = unsigned() else { return nil }
            if isTarget { values.target = v } else { values.actual = v }
        }
        guard !failed, seen & 3 == 3 else { return nil }
        return values
    }

    mutating func timestamp() -> Timestamp? {
        var seen: UInt8 = 0
        var t = Timestamp(seconds: 0, microseconds: 0)
        var first = true
        guard take(UInt8(ascii: "{")) else { return nil }
        while let key = member(&first) {
            let isSeconds = equals(key, "seconds")
            guard isSeconds || equals(key, "microseconds"), mark(&seen, isSeconds ? 1 : 2), let v = signed() else { return nil }
            if isSeconds { t.seconds = v } else { t.microseconds = v }
        }
        guard !failed, seen == 3 else { return nil }
        return t
    }

    // MARK: Tokens

    /// Set when an object's members end in something other than `,` or `}`.
    var failed = false

    /// An object's next key with its `:` (after `{` or the previous value),
    /// nil at its `}` or, with `failed` set, at anything else.
    mutating func member(_ first: inout Bool) -> Range<Int>? {
        skipWhitespace()
        guard index < bytes.count else { failed = true; return nil }
        let c = bytes[index]
        if c == UInt8(ascii: "}") {
            index += 1
            return nil
        }
        if !first {
            guard c == UInt8(ascii: ",") else { failed = true; return nil }
            index += 1
        }
        first = false
        guard let key = string(), take(UInt8(ascii: ":")) else { failed = true; return nil }
        return key
    }

    /// A string of printable ASCII without escapes: the range of its bytes.
    mutating func string() -> Range<Int>? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                index += 1
                return start..<(index - 1)
            }
            guard c >= 0x20, c < 0x7F, c != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    /// Digits only, no sign, fraction or exponent, within UInt64.
    mutating func unsigned() -> UInt64? {
        skipWhitespace()
        let start = index
        var value: UInt64 = 0
        while index < bytes.count, bytes[index] &- 48 < 10 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(bytes[index] &- 48))
            guard !o1, !o2 else { return nil }
            value = a
            index += 1
        }
        guard index > start, plainEnd(start) else { return nil }
        return value
    }

    /// An optional `-` and digits within Int64.
    mutating func signed() -> Int64? {
        skipWhitespace()
        let negative = index < bytes.count && bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        let start = index
        var value: Int64 = 0
        while index < bytes.count, bytes[index] &- 48 < 10 {
            let digit = Int64(bytes[index] &- 48)
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = negative ? m.subtractingReportingOverflow(digit) : m.addingReportingOverflow(digit)
            guard !o1, !o2 else { return nil }
            value = a
            index += 1
        }
        guard index > start, plainEnd(start) else { return nil }
        return value
    }

    /// A number as the general parser reads it: an integer within Int64
    /// converted, anything else through `Double(String)`.
    mutating func double() -> Double? {
        skipWhitespace()
        let start = index
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        let digits = index
        while index < bytes.count, bytes[index] &- 48 < 10 { index += 1 }
        guard index > digits, !(bytes[digits] == 48 && index - digits > 1) else { return nil }
        var integer = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            integer = false
            index += 1
            let fraction = index
            while index < bytes.count, bytes[index] &- 48 < 10 { index += 1 }
            guard index > fraction else { return nil }
        }
        // Exponents: the general path's (rare from balloond).
        guard index == bytes.count || (bytes[index] | 0x20) != UInt8(ascii: "e") else { return nil }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        if integer {
            guard let v = Int64(text) else { return nil }
            return Double(v)
        }
        guard let d = Double(text), d.isFinite else { return nil }
        return d
    }

    /// After an integer's digits: no leading zero, and not a fraction or an
    /// exponent (those are the general parser's).
    func plainEnd(_ digits: Int) -> Bool {
        if bytes[digits] == 48, index - digits > 1 { return false }
        guard index < bytes.count else { return true }
        let c = bytes[index]
        return c != UInt8(ascii: ".") && c | 0x20 != UInt8(ascii: "e")
    }

    mutating func takeNull() -> Bool {
        skipWhitespace()
        guard index + 4 <= bytes.count, bytes[index] == UInt8(ascii: "n"), bytes[index + 1] == UInt8(ascii: "u"),
            bytes[index + 2] == UInt8(ascii: "l"), bytes[index + 3] == UInt8(ascii: "l")
        else { return false }
        index += 4
        return true
    }

    mutating func take(_ c: UInt8) -> Bool {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == c else { return false }
        index += 1
        return true
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// Records a member; false when it was already there.
    func mark(_ seen: inout UInt8, _ bit: UInt8) -> Bool {
        guard seen & bit == 0 else { return false }
        seen |= bit
        return true
    }

    func equals(_ range: Range<Int>, _ text: StaticString) -> Bool {
        Self.equals(range, text, in: bytes)
    }

    static func equals(_ range: Range<Int>, _ text: StaticString, in bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard range.count == text.utf8CodeUnitCount else { return false }
        let p = text.utf8Start
        for (k, i) in range.enumerated() where bytes[i] != p[k] { return false }
        return true
    }

    /// The stat a key names (`VirtioStat.name`).
    static func stat(named key: Range<Int>, in bytes: UnsafeBufferPointer<UInt8>) -> VirtioStat? {
        for (stat, name) in statNames where name.count == key.count {
            if zip(key, name).allSatisfy({ bytes[$0] == $1 }) { return stat }
        }
        return nil
    }

    static let statNames: [(VirtioStat, [UInt8])] = VirtioStat.allCases.map { ($0, Array($0.name.utf8)) }
}

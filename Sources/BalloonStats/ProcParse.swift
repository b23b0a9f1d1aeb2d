// SPDX-License-Identifier: Apache-2.0
// Parsers for /proc/meminfo, /proc/vmstat and /proc/pressure/{memory,cpu,io}.
//
// Rules shared by all three:
// - Input is raw bytes; lines end in "\n" (a "\r" before it is dropped; the
//   last line may lack "\n").
// - A line that does not have the expected shape is skipped, never fatal.
// - Keys must be printable ASCII without blanks; anything else is skipped.
// - A number that does not fit in UInt64 makes its line malformed: skipped,
//   so the key is absent rather than wrong. Unit scaling (kB -> bytes)
//   saturates at UInt64.max instead of trapping.
// - A key that appears twice keeps its last well-formed value.

/// One line of a PSI file: averages in percent of wall time over 10 s, 60 s and
/// 300 s, and the total stall time in microseconds since boot.
public struct PressureLine: Sendable, Equatable {
    package var avg10: Double
    package var avg60: Double
    package var avg300: Double
    /// Cumulative stall time in microseconds.
    package var total: UInt64

    package init(avg10: Double, avg60: Double, avg300: Double, total: UInt64) {
        self.avg10 = avg10
        self.avg60 = avg60
        self.avg300 = avg300
        self.total = total
    }
}

/// The contents of a PSI file. `full` is nil where the kernel prints no "full"
/// line (e.g. /proc/pressure/cpu before 5.13); both are nil without PSI.
public struct Pressure: Sendable, Equatable {
    package var some: PressureLine?
    package var full: PressureLine?

    package init(some: PressureLine? = nil, full: PressureLine? = nil) {
        self.some = some
        self.full = full
    }
}

package enum ProcParse {
    // MARK: meminfo

    /// /proc/meminfo: key -> value in BYTES for "kB" lines (value * 1024,
    /// saturating); lines without a unit (HugePages_Total etc.) as-is.
    /// Lines with any other unit or trailing text are skipped.
    package static func meminfo(_ bytes: some Collection<UInt8>) -> [String: UInt64] {
        withContiguousBytes(bytes, meminfo(buffer:))
    }

    /// Same as `meminfo(_:)` for a raw buffer (e.g. straight from `read(2)`).
    package static func meminfo(_ raw: UnsafeRawBufferPointer) -> [String: UInt64] {
        meminfo(buffer: raw.bindMemory(to: UInt8.self))
    }

    static func meminfo(buffer buf: UnsafeBufferPointer<UInt8>) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        result.reserveCapacity(64)
        forEachLine(buf) { start, end in
            if let (key, value) = meminfoLine(buf, start, end) { result[key] = value }
        }
        return result
    }

    /// One meminfo value by key, as `meminfo(_:)[key]` would give it, without
    /// building the dictionary (the free-memory mode samples 4 times a second).
    package static func meminfo(_ raw: UnsafeRawBufferPointer, key: String) -> UInt64? {
        value(raw.bindMemory(to: UInt8.self), key: key, entry: meminfoEntry)
    }

    /// One vmstat value by key, as `vmstat(_:)[key]` would give it.
    package static func vmstat(_ raw: UnsafeRawBufferPointer, key: String) -> UInt64? {
        value(raw.bindMemory(to: UInt8.self), key: key, entry: vmstatEntry)
    }

    /// The last well-formed line whose key is `key` (a dictionary keeps the last too).
    static func value(_ buf: UnsafeBufferPointer<UInt8>, key: String,
                      entry: (UnsafeBufferPointer<UInt8>, Int, Int) -> (keyEnd: Int, value: UInt64)?) -> UInt64? {
        var want = key
        return want.withUTF8 { k -> UInt64? in
            var found: UInt64?
            forEachLine(buf) { start, end in
                // The key's bytes first: most lines differ at once, and only
                // the wanted one is parsed.
                guard end - start > k.count else { return }
                for j in 0..<k.count where buf[start + j] != k[j] { return }
                guard let (keyEnd, value) = entry(buf, start, end), keyEnd - start == k.count else { return }
                found = value
            }
            return found
        }
    }

    /// "Key:<blanks>digits[<blanks>kB]<blanks>"
    @inline(__always)
    static func meminfoLine(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> (String, UInt64)? {
        guard let (colon, value) = meminfoEntry(buf, start, end), let key = makeKey(buf, start, colon) else { return nil }
        return (key, value)
    }

    /// Where the key ends and the value, in bytes for "kB" lines.
    @inline(__always)
    static func meminfoEntry(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> (keyEnd: Int, value: UInt64)? {
        var colon = start
        while colon < end && buf[colon] != ASCII.colon { colon += 1 }
        guard colon < end else { return nil }
        var i = colon + 1
        skipBlanks(buf, &i, end)
        guard var value = parseUInt64(buf, &i, end) else { return nil }
        skipBlanks(buf, &i, end)
        if i + 1 < end && buf[i] == ASCII.k && buf[i + 1] == ASCII.B {
            i += 2
            let (scaled, overflow) = value.multipliedReportingOverflow(by: 1024)
            value = overflow ? .max : scaled
            skipBlanks(buf, &i, end)
        }
        guard i == end else { return nil }
        return (colon, value)
    }

    // MARK: vmstat

    /// /proc/vmstat: key -> value, from "key<blanks>digits" lines.
    package static func vmstat(_ bytes: some Collection<UInt8>) -> [String: UInt64] {
        withContiguousBytes(bytes, vmstat(buffer:))
    }

    /// Same as `vmstat(_:)` for a raw buffer.
    package static func vmstat(_ raw: UnsafeRawBufferPointer) -> [String: UInt64] {
        vmstat(buffer: raw.bindMemory(to: UInt8.self))
    }

    /// The lines of `vmstat(_:)` whose key starts with one of `prefixes`, as it
    /// would give them.
    package static func vmstat(_ raw: UnsafeRawBufferPointer, keyPrefixes prefixes: [String]) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        forEachVmstat(raw, keyPrefixes: prefixes) { key, value in
            if let name = makeKey(key, 0, key.count) { result[name] = value }
        }
        return result
    }

    /// Calls `body` with the key (its bytes: no String is made) and the value
    /// of each line `vmstat(_:)` would give whose key starts with one of
    /// `prefixes`. The other lines are passed over after a lookup of their
    /// first byte: the floor check reads its reclaim counters this way once a
    /// second, and building a dictionary of them was most of an idle daemon's
    /// CPU.
    package static func forEachVmstat(_ raw: UnsafeRawBufferPointer, keyPrefixes prefixes: [String],
                                      _ body: (UnsafeBufferPointer<UInt8>, UInt64) -> Void) {
        let buf = raw.bindMemory(to: UInt8.self)
        guard let base = buf.baseAddress, !prefixes.isEmpty else { return }
        let every = prefixes.contains("")  // "" starts every key.
        var flat: [UInt8] = []
        var spans: [(start: Int, count: Int)] = []
        var starts = [Bool](repeating: every, count: 256)
        for prefix in prefixes where !prefix.isEmpty {
            spans.append((flat.count, prefix.utf8.count))
            flat.append(contentsOf: prefix.utf8)
            starts[Int(prefix.utf8.first!)] = true  // Not empty (above).
        }
        let spanList = spans, startsWith = starts  // Constants in the loop: no exclusivity checks per line.
        flat.withUnsafeBufferPointer { wanted in
            forEachLine(buf) { start, end in
                guard startsWith[Int(buf[start])] else { return }
                var matches = every
                for span in spanList where !matches && end - start >= span.count {
                    var j = 0
                    while j < span.count && buf[start + j] == wanted[span.start + j] { j += 1 }
                    matches = j == span.count
                }
                guard matches, let (keyEnd, value) = vmstatEntry(buf, start, end), keyEnd > start else { return }
                for i in start..<keyEnd where !ASCII.isKeyByte(buf[i]) { return }  // As makeKey refuses it.
                body(UnsafeBufferPointer(start: base + start, count: keyEnd - start), value)
            }
        }
    }

    static func vmstat(buffer buf: UnsafeBufferPointer<UInt8>) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        result.reserveCapacity(256)
        forEachLine(buf) { start, end in
            if let (key, value) = vmstatLine(buf, start, end) { result[key] = value }
        }
        return result
    }

    @inline(__always)
    static func vmstatLine(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> (String, UInt64)? {
        guard let (keyEnd, value) = vmstatEntry(buf, start, end), let key = makeKey(buf, start, keyEnd) else { return nil }
        return (key, value)
    }

    @inline(__always)
    static func vmstatEntry(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> (keyEnd: Int, value: UInt64)? {
        var keyEnd = start
        while keyEnd < end && !ASCII.isBlank(buf[keyEnd]) { keyEnd += 1 }
        guard keyEnd < end else { return nil }  // no value
        var i = keyEnd
        skipBlanks(buf, &i, end)
        guard let value = parseUInt64(buf, &i, end) else { return nil }
        skipBlanks(buf, &i, end)
        guard i == end else { return nil }
        return (keyEnd, value)
    }

    // MARK: pressure

    /// /proc/pressure/memory (or cpu/io):
    /// "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and "full ..." lines.
    /// A line lacking any of the four fields, or with a malformed one, is
    /// skipped (that half is nil); unknown `key=value` fields are ignored.
    package static func pressure(_ bytes: some Collection<UInt8>) -> Pressure {
        withContiguousBytes(bytes, pressure(buffer:))
    }

    /// Same as `pressure(_:)` for a raw buffer.
    package static func pressure(_ raw: UnsafeRawBufferPointer) -> Pressure {
        pressure(buffer: raw.bindMemory(to: UInt8.self))
    }

    static func pressure(buffer buf: UnsafeBufferPointer<UInt8>) -> Pressure {
        var result = Pressure()
        forEachLine(buf) { start, end in
            var i = start
            skipBlanks(buf, &i, end)
            let wordStart = i
            while i < end && !ASCII.isBlank(buf[i]) { i += 1 }
            let isSome = bytesEqual(buf, wordStart, i, "some")
            let isFull = !isSome && bytesEqual(buf, wordStart, i, "full")
            guard isSome || isFull, let line = pressureFields(buf, i, end) else { return }
            if isSome { result.some = line } else { result.full = line }
        }
        return result
    }

    /// Parses " avg10=x avg60=y avg300=z total=n" from `i` to `end`.
    @inline(__always)
    static func pressureFields(_ buf: UnsafeBufferPointer<UInt8>, _ from: Int, _ end: Int) -> PressureLine? {
        var avg10: Double?, avg60: Double?, avg300: Double?
        var total: UInt64?
        var i = from
        while true {
            skipBlanks(buf, &i, end)
            if i == end { break }
            let keyStart = i
            while i < end && buf[i] != ASCII.equals && !ASCII.isBlank(buf[i]) { i += 1 }
            guard i < end, buf[i] == ASCII.equals, i > keyStart else { return nil }
            let keyEnd = i
            i += 1
            if bytesEqual(buf, keyStart, keyEnd, "total") {
                guard let v = parseUInt64(buf, &i, end) else { return nil }
                total = v
            } else if bytesEqual(buf, keyStart, keyEnd, "avg10") {
                guard let v = parseDecimal(buf, &i, end) else { return nil }
                avg10 = v
            } else if bytesEqual(buf, keyStart, keyEnd, "avg60") {
                guard let v = parseDecimal(buf, &i, end) else { return nil }
                avg60 = v
            } else if bytesEqual(buf, keyStart, keyEnd, "avg300") {
                guard let v = parseDecimal(buf, &i, end) else { return nil }
                avg300 = v
            } else {
                // Unknown field: skip its value.
                while i < end && !ASCII.isBlank(buf[i]) { i += 1 }
                continue
            }
            // A value must end at a blank or the end of the line.
            guard i == end || ASCII.isBlank(buf[i]) else { return nil }
        }
        guard let avg10, let avg60, let avg300, let total else { return nil }
        return PressureLine(avg10: avg10, avg60: avg60, avg300: avg300, total: total)
    }
}

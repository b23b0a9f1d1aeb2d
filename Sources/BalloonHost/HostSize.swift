// SPDX-License-Identifier: Apache-2.0
/// Sizes on the command line: `4096`, `0`, `512M`, `2G`, `1.5G`, `1.5GiB`,
/// `64k`, `1T`; units are powers of 1024 (`K`/`KB`/`KiB`, any case), a bare
/// number or a `B` suffix is bytes. Fractions are allowed with a unit and
/// rounded down to whole bytes.
///
/// To be replaced by `BalloonConfig.SizeSpec.parse` when that target lands.
public enum HostSize {
    public static func parse(_ text: String) throws(HostError) -> UInt64 {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { throw invalid(text, "empty") }

        // Split into the number and the unit.
        var numberEnd = trimmed.startIndex
        while numberEnd < trimmed.endIndex, trimmed[numberEnd].isASCII,
            trimmed[numberEnd].isNumber || trimmed[numberEnd] == "."
        {
            numberEnd = trimmed.index(after: numberEnd)
        }
        let number = String(trimmed[..<numberEnd])
        let unit = String(trimmed[numberEnd...]).trimmingSpaces.lowercased()

        let shift: UInt64
        switch unit {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        case "t", "tb", "tib": shift = 40
        case "p", "pb", "pib": shift = 50
        default: throw invalid(text, "unknown unit \"\(unit)\" (use K, M, G, T, P; powers of 1024)")
        }

        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard !number.isEmpty, parts.count <= 2, !parts[0].isEmpty || parts.count == 2,
            parts.allSatisfy({ $0.allSatisfy(\.isASCII) })
        else { throw invalid(text, "expected a number, e.g. 512M, 1.5G or 4096") }
        guard let whole = parts[0].isEmpty ? 0 : UInt64(parts[0]) else { throw invalid(text, "number too large") }
        let fraction = parts.count == 2 ? String(parts[1]) : ""
        if parts.count == 2 && fraction.isEmpty { throw invalid(text, "expected digits after the decimal point") }
        if !fraction.isEmpty && shift == 0 { throw invalid(text, "a byte count must be a whole number") }

        let multiplier: UInt64 = 1 << shift
        let (wholeBytes, overflow) = whole.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw invalid(text, "too large") }

        // fraction × multiplier exactly: digits / 10^k × 2^shift, rounded down.
        var fractionBytes: UInt64 = 0
        if !fraction.isEmpty {
            let digits = fraction.prefix(18)  // 10^18 < 2^63: enough precision
            guard let numerator = UInt64(digits) else { throw invalid(text, "expected a number") }
            var denominator: UInt64 = 1
            for _ in 0..<digits.count { denominator *= 10 }
            // numerator < denominator ≤ 10^18 and multiplier ≤ 2^50: use 128-bit math.
            let product = numerator.multipliedFullWidth(by: multiplier)
            fractionBytes = denominator.dividingFullWidth((product.high, product.low)).quotient
        }
        let (total, overflow2) = wholeBytes.addingReportingOverflow(fractionBytes)
        guard !overflow2 else { throw invalid(text, "too large") }
        return total
    }

    private static func invalid(_ text: String, _ why: String) -> HostError {
        .usage("invalid size \"\(text)\": \(why)")
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

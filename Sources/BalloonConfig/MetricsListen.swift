// SPDX-License-Identifier: Apache-2.0

/// `[Metrics] Listen=`: where balloon-hostd serves `/metrics` (docs/metrics.md).
package enum MetricsListen: Sendable, Equatable, CustomStringConvertible {
    /// `no`: no metrics endpoint.
    case off
    /// `ADDRESS:PORT`, `[IPV6]:PORT`: an IP literal (no name lookups) and a
    /// port; port 0 takes any free port (logged; for tests).
    case tcp(address: IPAddress, port: UInt16)
    /// An absolute path: a unix socket (for a local proxy).
    case unix(path: String)

    package static let defaultValue = MetricsListen.tcp(address: .v4([127, 0, 0, 1]), port: 9468)

    package var description: String {
        switch self {
        case .off: "no"
        case let .tcp(address, port): "\(address.bracketed):\(port)"
        case let .unix(path): path
        }
    }
}

/// An IPv4 or IPv6 address as bytes in network order.
package enum IPAddress: Sendable, Equatable, CustomStringConvertible {
    case v4([UInt8])
    case v6([UInt8])

    package var bytes: [UInt8] {
        switch self {
        case let .v4(b), let .v6(b): b
        }
    }

    /// Dotted quad, or RFC 5952 text (lower case, longest zero run as `::`).
    package var description: String {
        switch self {
        case let .v4(b): return b.map(String.init).joined(separator: ".")
        case let .v6(b):
            let groups = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
            var best = (start: -1, length: 1)
            var i = 0
            while i < 8 {
                var j = i
                while j < 8, groups[j] == 0 { j += 1 }
                if j - i > best.length { best = (i, j - i) }
                i = j == i ? i + 1 : j
            }
            let hex = groups.map { String($0, radix: 16) }
            guard best.start >= 0 else { return hex.joined(separator: ":") }
            return hex[..<best.start].joined(separator: ":") + "::" + hex[(best.start + best.length)...].joined(separator: ":")
        }
    }

    var bracketed: String {
        if case .v6 = self { return "[\(description)]" }
        return description
    }

    /// `127.0.0.1`, `::1`, `fe80::1:2`; nil for anything else (names, zones,
    /// IPv4-in-IPv6 forms).
    package static func parse(_ text: String) -> IPAddress? {
        if text.contains(".") {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4 else { return nil }
            var out: [UInt8] = []
            for p in parts {
                guard (1...3).contains(p.count), p.allSatisfy(\.isASCII), let n = UInt8(p), p == "0" || !p.hasPrefix("0") else { return nil }
                out.append(n)
            }
            return .v4(out)
        }
        func groups(_ s: Substring) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            for g in s.split(separator: ":", omittingEmptySubsequences: false) {
                guard (1...4).contains(g.count), g.allSatisfy(\.isHexDigit), let n = UInt16(g, radix: 16) else { return nil }
                out.append(n)
            }
            return out
        }
        var all: [UInt16]
        if let range = text.firstRange(of: "::") {
            guard let head = groups(text[..<range.lowerBound]), let tail = groups(text[range.upperBound...]),
                head.count + tail.count <= 7
            else { return nil }
            all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let g = groups(text[...]), g.count == 8 else { return nil }
            all = g
        }
        return .v6(all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
    }
}

/// `no`, `ADDRESS:PORT`, `[IPV6]:PORT` or an absolute path.
func parseMetricsListen(_ value: String) throws(ValueError) -> MetricsListen {
    let usage = "use e.g. 127.0.0.1:9468, [::1]:9468, a unix socket's absolute path, or no"
    if ["no", "off", "false"].contains(value.lowercased()) { return .off }
    if value.hasPrefix("/") {
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw ValueError("\"\(value)\" contains a control character")
        }
        return .unix(path: value)
    }
    guard let colon = value.lastIndex(of: ":") else { throw ValueError("\"\(value)\" has no :PORT (\(usage))") }
    var host = value[..<colon]
    let portText = value[value.index(after: colon)...]
    guard let port = UInt16(portText), portText.allSatisfy(\.isASCII) else {
        throw ValueError("\"\(value)\": \"\(portText)\" is not a port number from 0 to 65535 (\(usage))")
    }
    let bracketed = host.hasPrefix("[") && host.hasSuffix("]")
    if bracketed { host = host.dropFirst().dropLast() }
    guard let address = IPAddress.parse(String(host)), bracketed == (address.bytes.count == 16) else {
        throw ValueError("\"\(value)\": \"\(host)\" is not an IP address (IPv6 in brackets; no host names) (\(usage))")
    }
    return .tcp(address: address, port: port)
}

// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// A column of `balloonctl top`, by its `--sort` name.
public enum TopColumn: String, CaseIterable, Sendable {
    case name, state, policy, ram, target, actual, held, available
    case psiSome = "psi-some", psiFull = "psi-full", freed

    public var header: String { rawValue == "ram" ? "RAM" : rawValue.uppercased() }

    /// Sizes and pressure sort largest first, text from A.
    var largestFirst: Bool {
        switch self {
        case .name, .state, .policy, .held: false
        default: true
        }
    }

    /// The column `s` moves the sort to.
    public var next: TopColumn {
        let all = Self.allCases
        return all[(all.firstIndex(of: self)! + 1) % all.count]
    }
}

/// How `balloonctl top` shows a frame.
public struct TopView: Sendable, Equatable {
    public var sort: TopColumn
    public var reverse: Bool
    /// The terminal's width: lines are cut to it; nil: not cut.
    public var width: Int?
    /// Interactive (a terminal): the keys' line is shown.
    public var keys: Bool
    public var interval: Duration

    public init(sort: TopColumn = .name, reverse: Bool = false, width: Int? = nil, keys: Bool = false, interval: Duration = .seconds(2)) {
        self.sort = sort
        self.reverse = reverse
        self.width = width
        self.keys = keys
        self.interval = interval
    }
}

extension HostFormat {
    /// Text that came from a guest or from the agent, made harmless for a
    /// terminal: escape sequences (ESC …, C1 CSI/OSC) are dropped whole, and
    /// any other control character (C0, DEL, C1) or bidirectional override
    /// becomes `?`, so a guest can neither move the cursor, retitle the
    /// window, hide text nor reorder what is shown.
    public static func terminalSafe(_ text: String) -> String {
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < s.count {
            let c = s[i].value
            if c == 0x1B || c == 0x9B || c == 0x9D || c == 0x90 {
                i = endOfEscape(s, at: i)
                continue
            }
            if PrintableText.needsEscape(s[i]) {  // the same set the log and balloonctl escape
                out.append("?")
            } else {
                out.append(s[i])
            }
            i += 1
        }
        return String(out)
    }

    /// The index after the escape sequence that starts at `start`.
    static func endOfEscape(_ s: [Unicode.Scalar], at start: Int) -> Int {
        var i = start + 1
        var kind = s[start].value
        if kind == 0x1B {
            guard i < s.count else { return i }
            switch s[i].value {
            case 0x5B: kind = 0x9B  // ESC [ : CSI
            case 0x5D, 0x50, 0x58, 0x5E, 0x5F: kind = 0x9D  // ESC ] P X ^ _ : strings
            default:
                // ESC, intermediates (0x20–0x2F), one final byte.
                while i < s.count, (0x20...0x2F).contains(s[i].value) { i += 1 }
                return i < s.count && (0x30...0x7E).contains(s[i].value) ? i + 1 : i
            }
            i += 1
        }
        if kind == 0x9B {
            // Parameters and intermediates, then a final byte.
            while i < s.count, (0x20...0x3F).contains(s[i].value) { i += 1 }
            return i < s.count && (0x40...0x7E).contains(s[i].value) ? i + 1 : i
        }
        // A string (OSC, DCS …) ends at BEL, ST (ESC \) or C1 ST.
        while i < s.count {
            let c = s[i].value
            if c == 0x07 || c == 0x9C { return i + 1 }
            if c == 0x1B { return i + 1 < s.count && s[i + 1].value == 0x5C ? i + 2 : i + 1 }
            i += 1
        }
        return i
    }

    /// Guests in `column`'s order (then by name); unknown values last.
    public static func sorted(_ guests: [GuestSummary], by column: TopColumn, reverse: Bool = false) -> [GuestSummary] {
        func number(_ g: GuestSummary) -> Double? {
            switch column {
            case .ram: g.ramSize.map(Double.init)
            case .target: g.target.map(Double.init)
            case .actual: g.actual.map(Double.init)
            case .available: g.available.map(Double.init)
            case .psiSome: g.psiSomeAvg10
            case .psiFull: g.psiFullAvg10
            case .freed: Double(g.bytesFreed)
            case .name, .state, .policy, .held: nil
            }
        }
        func text(_ g: GuestSummary) -> String? {
            switch column {
            case .state: g.connected ? "up" : "down"
            case .policy: g.policy.rawValue
            case .held: g.held?.code.rawValue  // a balloon that is not held: last
            default: g.name
            }
        }
        // Whether a goes before b (nil: a tie, broken by name); a known value
        // before an unknown one whichever the direction.
        func before<T: Comparable>(_ x: T?, _ y: T?, largestFirst: Bool) -> Bool? {
            switch (x, y) {
            case let (x?, y?): x == y ? nil : (largestFirst ? x > y : x < y) != reverse
            case (.some, nil): true
            case (nil, .some): false
            case (nil, nil): nil
            }
        }
        return guests.sorted { a, b in
            let order = column.largestFirst
                ? before(number(a), number(b), largestFirst: true) : before(text(a), text(b), largestFirst: false)
            return order ?? (a.name < b.name)
        }
    }

    /// One frame of `balloonctl top`: the agent's line, the table in the
    /// view's order, and (interactive) the keys. `error` replaces the table's
    /// contents when the agent did not answer.
    public static func topFrame(guests: [GuestSummary], policy: PolicyStatusReply?, view: TopView, error: String? = nil) -> String {
        let up = guests.filter(\.connected).count
        let freed = guests.reduce(UInt64(0)) { $0 &+ $1.bytesFreed }
        var lines: [String] = []
        var head = "balloon-hostd: \(guests.count) guest\(guests.count == 1 ? "" : "s") (\(up) up), freed \(HumanBytes.format(freed))"
        if let p = policy {
            head += ", policy \(terminalSafe(p.mode)) every \(seconds(p.interval.seconds)); \(p.budget ? "budget" : "host") \(HumanBytes.format(p.hostTotal)), available \(HumanBytes.format(p.hostAvailable)), reserve \(HumanBytes.format(p.hostReserve))"
        }
        lines.append(head)
        var sortLine = "sorted by \(view.sort.rawValue)\(view.reverse ? " (reversed)" : ""), every \(seconds(view.interval.seconds))"
        if view.keys { sortLine += "; keys: s sort by the next column, r reverse, q quit" }
        lines.append(sortLine)
        lines.append("")
        if let error {
            lines.append("no answer from the agent: " + terminalSafe(error))
        } else if guests.isEmpty {
            lines.append("no guests")
        } else {
            let columns = TopColumn.allCases
            var table = [columns.map(\.header) + ["LAST CHANGE"]]
            for g in sorted(guests, by: view.sort, reverse: view.reverse) {
                table.append([
                    terminalSafe(g.name), g.connected ? "up" : "down", terminalSafe(g.policy.rawValue), bytes(g.ramSize),
                    bytes(g.target), bytes(g.actual), g.held?.code.rawValue ?? "-", bytes(g.available),
                    g.psiSomeAvg10.map { fixed($0, decimals: 2) } ?? "-", g.psiFullAvg10.map { fixed($0, decimals: 2) } ?? "-",
                    HumanBytes.format(g.bytesFreed), g.reason.map(terminalSafe) ?? "-",
                ])
            }
            let last = table[0].count - 1
            let widths = table[0].indices.map { i in table.map { $0[i].count }.max() ?? 0 }
            for row in table {
                lines.append(row.indices.map { i in
                    i == last ? row[i] : i == 0 ? pad(row[i], widths[i]) : padLeft(row[i], widths[i])
                }.joined(separator: "  "))
            }
        }
        if let width = view.width, width > 0 {
            lines = lines.map { $0.count > width ? String($0.prefix(width)) : $0 }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `balloonctl top --json`: the guests in the view's order and the policy.
    public static func topJSON(guests: [GuestSummary], policy: PolicyStatusReply?, sort: TopColumn, reverse: Bool) -> JSON {
        [
            "guests": .array(sorted(guests, by: sort, reverse: reverse).map(\.json)),
            "policy": policy?.json ?? .null,
            "sort": .string(sort.rawValue), "reverse": .bool(reverse),
        ]
    }
}

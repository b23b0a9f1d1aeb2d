// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonStats

/// Text for people: what balloonctl prints. Pure, so it is tested directly.
public enum HostFormat {
    /// `5 s`, `0.5 s`, `2.25 s`.
    public static func seconds(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return "\(Int64(value)) s" }
        var text = fixed(value, decimals: 3)
        while text.hasSuffix("0") { text.removeLast() }
        return text + " s"
    }

    /// A fixed-point number without Foundation: `fixed(0.456, decimals: 2)` → `0.46`.
    public static func fixed(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let negative = value < 0
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e18 else { return String(value) }
        let n = UInt64(scaled)
        let unit = UInt64(scale)
        var text = String(n / unit)
        if decimals > 0 {
            var frac = String(n % unit)
            while frac.count < decimals { frac = "0" + frac }
            text += "." + frac
        }
        return (negative && n != 0 ? "-" : "") + text
    }

    public static func bytes(_ value: UInt64?) -> String { value.map(HumanBytes.format) ?? "-" }

    /// `actual 192 MiB / target 256 MiB`
    public static func progress(actual: UInt64, target: UInt64) -> String {
        "actual \(HumanBytes.format(actual)) / target \(HumanBytes.format(target))"
    }

    /// Label/value rows with the labels padded to one width. Values may be
    /// a guest's text (its version, a reason): control characters escaped.
    public static func rows(_ rows: [(String, String)]) -> String {
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { pad($0.0, width) + "  " + PrintableText.escape($0.1) }.joined(separator: "\n") + "\n"
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    static func padLeft(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    public static func info(_ info: InfoReply) -> String {
        rows([
            ("version", info.version),
            ("protocol", String(info.protocolVersion)),
            ("features", info.features.isEmpty ? "-" : info.features.joined(separator: ", ")),
            ("page size", HumanBytes.format(info.pageSize)),
            ("memory total", HumanBytes.format(info.memoryTotal)),
            ("max balloon", HumanBytes.format(info.maxBalloon)),
            ("MemAvailable floor", HumanBytes.format(info.memAvailableFloor)),
            ("chunk size", HumanBytes.format(info.chunkSize)),
            ("transparent huge pages", info.transparentHugePages ? "yes" : "no"),
            ("channel", info.channel.isEmpty ? "-" : info.channel),
        ])
    }

    public static func status(_ status: QueryReply) -> String {
        rows([
            ("target", HumanBytes.format(status.target)),
            ("effective target", HumanBytes.format(status.effectiveTarget)),
            ("actual", HumanBytes.format(status.actual)),
            ("state", status.state.rawValue),
            ("reason", status.reason?.description ?? "-"),
        ])
    }

    /// The 16 stats (bytes humanised, counts plain, absent `-`), PSI and the balloon.
    public static func stats(_ stats: StatsReply) -> String {
        var lines: [(String, String)] = []
        for stat in VirtioStat.allCases {
            let value = stats.stats[stat]
            lines.append((stat.name, stat.isBytes ? bytes(value) : value.map { String($0) } ?? "-"))
        }
        // Not a virtio stat: balloond's own, beside them (docs/protocol.md).
        lines.append(("file-refaults", stats.fileRefaults.map { String($0) } ?? "-"))
        var out = rows(lines)
        out += "\n"
        out += pad("pressure", 8) + padLeft("avg10", 8) + padLeft("avg60", 8) + padLeft("avg300", 8) + padLeft("total µs", 14) + "\n"
        for (label, line) in [("some", stats.pressure?.some), ("full", stats.pressure?.full)] {
            if let line {
                out += pad(label, 8) + padLeft(fixed(line.avg10, decimals: 2), 8) + padLeft(fixed(line.avg60, decimals: 2), 8)
                    + padLeft(fixed(line.avg300, decimals: 2), 8) + padLeft(String(line.total), 14) + "\n"
            } else {
                out += pad(label, 8) + padLeft("-", 8) + padLeft("-", 8) + padLeft("-", 8) + padLeft("-", 14) + "\n"
            }
        }
        out += "\n"
        out += "balloon  target \(bytes(stats.balloonTarget)) / actual \(bytes(stats.balloonActual))\n"
        return out
    }

    /// One `watch` refresh as a single line (when stdout is not a terminal).
    public static func watchLine(status: QueryReply, stats: StatsReply) -> String {
        "target \(HumanBytes.format(status.target))  actual \(HumanBytes.format(status.actual))  state \(status.state.rawValue)"
            + "  MemAvailable \(bytes(stats.stats[.availableMemory]))  MemFree \(bytes(stats.stats[.freeMemory]))"
            + "  PSI some \(psi(stats.pressure?.some)) full \(psi(stats.pressure?.full))"
    }

    /// One `watch` refresh as a block (for a terminal, redrawn in place).
    public static func watchBlock(status: QueryReply, stats: StatsReply) -> String {
        rows([
            ("target", HumanBytes.format(status.target)
                + (status.effectiveTarget != status.target ? " (effective \(HumanBytes.format(status.effectiveTarget)))" : "")),
            ("actual", HumanBytes.format(status.actual)),
            ("state", status.state.rawValue + (status.reason.map { " (\($0))" } ?? "")),
            ("MemAvailable", bytes(stats.stats[.availableMemory])),
            ("MemFree", bytes(stats.stats[.freeMemory])),
            ("PSI some avg10", psi(stats.pressure?.some)),
            ("PSI full avg10", psi(stats.pressure?.full)),
        ])
    }

    static func psi(_ line: PressureLine?) -> String { line.map { fixed($0.avg10, decimals: 2) } ?? "-" }

    /// `seconds.micros` of an event timestamp.
    public static func timestamp(_ ts: Timestamp) -> String {
        var micros = String(ts.microseconds)
        while micros.count < 6 { micros = "0" + micros }
        return "\(ts.seconds).\(micros)"
    }

    /// One event per line: `1795000000.123456 BALLOON_CHANGE actual 192 MiB / target 256 MiB`.
    public static func event(_ event: Event) -> String {
        let head = "\(timestamp(event.timestamp)) \(PrintableText.escape(event.name))"
        switch try? GuestEvent(event) {
        case let .balloonChange(p)?, let .targetReached(p)?:
            return head + " " + progress(actual: p.actual, target: p.target)
        case let .targetUnreachable(p, reason)?:
            return head + " " + progress(actual: p.actual, target: p.target) + " reason " + reason.description
        case let .stats(s)?:
            return head + " MemAvailable \(bytes(s.stats[.availableMemory])) MemFree \(bytes(s.stats[.freeMemory]))"
                + " PSI some \(psi(s.pressure?.some)) full \(psi(s.pressure?.full))"
                + " balloon \(bytes(s.balloonActual)) / \(bytes(s.balloonTarget))"
        case .deflated?, .framesInflated?, .framesDeflated?, nil:
            return head + " " + PrintableText.escape(event.data.serialized())
        }
    }
}

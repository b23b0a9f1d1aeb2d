// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol

/// The free-memory mode's part of `query` and `stats` as text: the same
/// fields the JSON carries (docs/free-memory.md), as a block of its own.
enum FreeMemoryFormat {
    /// `query`: HostFormat's rows, then the mode's (absent from older guests).
    static func status(_ status: QueryReply) -> String {
        var out = HostFormat.status(status)
        guard let mode = status.freeMemory else { return out }
        var rows: [(String, String)] = [
            ("free-memory mode", mode.enabled ? "on" : mode.allowed ? "off" : "off (not allowed by the guest)"),
            ("cushion", HumanBytes.format(mode.cushion)),
            ("free-memory target", HumanBytes.format(mode.target)),
            ("free memory held", HumanBytes.format(mode.held)),
        ]
        if let cold = mode.coldCache {
            rows.append(("cold page cache", "\(cold.state.rawValue), \(HumanBytes.format(cold.reclaimedTotal)) reclaimed"))
        }
        out += "\n" + HostFormat.rows(rows)
        return out
    }

    /// `stats`: HostFormat's text, then the held part of the balloon, which
    /// `available-memory` (the kernel's MemAvailable) does not include.
    static func stats(_ stats: StatsReply) -> String {
        HostFormat.stats(stats) + "free memory held \(HostFormat.bytes(stats.freeMemoryHeld)) (not in available-memory)\n"
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

extension HostFormat {
    /// `balloonctl list`: one line per guest under a header.
    public static func guestList(_ list: GuestListReply) -> String {
        let header = ["NAME", "STATE", "POLICY", "RAM", "TARGET", "ACTUAL", "HELD", "AVAILABLE", "PSI-SOME", "PSI-FULL", "FREED"]
        var table = [header]
        for g in list.guests {
            table.append([
                PrintableText.escape(g.name), g.connected ? "up" : "down", g.policy.rawValue, bytes(g.ramSize), bytes(g.target), bytes(g.actual),
                g.held?.code.rawValue ?? "-", bytes(g.available), g.psiSomeAvg10.map { fixed($0, decimals: 2) } ?? "-",
                g.psiFullAvg10.map { fixed($0, decimals: 2) } ?? "-", HumanBytes.format(g.bytesFreed),
            ])
        }
        guard list.guests.count > 0 else { return "no guests\n" }
        let widths = header.indices.map { i in table.map { $0[i].count }.max() ?? 0 }
        return table.map { row in
            row.indices.map { i in i == 0 ? pad(row[i], widths[i]) : padLeft(row[i], widths[i]) }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    /// `balloonctl guest-status NAME`.
    public static func guestStatus(_ s: GuestStatusReply) -> String {
        let g = s.guest
        return rows([
            ("name", g.name),
            ("channel", g.channel),
            ("from", g.source),
            ("policy", g.policy.rawValue),
            ("RAM", bytes(g.ramSize)),
            ("target", bytes(g.target)),
            ("actual", bytes(g.actual)),
            ("available", bytes(g.available)),
            ("PSI some/full avg10", (g.psiSomeAvg10.map { fixed($0, decimals: 2) } ?? "-") + " / " + (g.psiFullAvg10.map { fixed($0, decimals: 2) } ?? "-")),
            ("last change", g.reason ?? "-"),
            ("held by", g.held?.description ?? "-"),
        ]) + serveStatus(s.session)
    }

    /// `balloonctl policy`.
    public static func policyStatus(_ p: PolicyStatusReply) -> String {
        rows([
            ("mode", p.mode),
            ("interval", seconds(p.interval.seconds)),
            (p.budget ? "host budget" : "host memory", HumanBytes.format(p.hostTotal)),
            ("available", HumanBytes.format(p.hostAvailable)),
            ("reserve", HumanBytes.format(p.hostReserve)),
            ("rounds", String(p.rounds)),
            ("targets set", String(p.targetsSet)),
        ])
    }
}

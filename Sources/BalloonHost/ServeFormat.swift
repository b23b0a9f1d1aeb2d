// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

extension HostFormat {
    /// `balloonctl serve-status` as label/value rows.
    public static func serveStatus(_ s: ServeStatus) -> String {
        let r = s.refused
        return rows([
            ("guest", s.guest.isEmpty ? "-" : s.guest),
            ("guest connected", s.guestConnected ? "yes" : "no"),
            ("reconnects", String(s.reconnects) + (s.daemonRestarts > 0 ? " (guest daemon restarted \(s.daemonRestarts) times)" : "")),
            ("desired target", s.desiredTarget.map(HumanBytes.format) ?? "-"),
            ("memory backend", s.memoryBackend ?? "-"),
            ("backend state", s.memoryBackendState.map(backendState) ?? "-"),
            ("frame reporting", s.frameReporting ? "on" : "off"),
            ("frames held", "\(s.framesHeld) (\(HumanBytes.format(s.bytesHeld)))"),
            ("bytes freed", HumanBytes.format(s.bytesFreed) + (s.bytesAbandoned > 0 ? " (\(HumanBytes.format(s.bytesAbandoned)) reported by a daemon gone before serve acted: never freed)" : "")),
            ("punches", String(s.punches) + (s.punchFailures > 0 ? " (\(s.punchFailures) failed)" : "")),
            ("bytes populated", HumanBytes.format(s.bytesPopulated) + (s.populateFailures > 0 ? " (\(s.populateFailures) failed)" : "")),
            ("prefaulted", HumanBytes.format(s.bytesPrefaulted) + (s.prefaultFailures > 0 ? " (\(s.prefaultFailures) failed)" : "")),
            ("refused", "outside RAM \(r.outsideRam), overlap \(r.overlap), rate limit \(r.rateLimit), malformed \(r.malformed)"),
            ("control clients", "\(s.controlClients) (dropped \(s.clientsDropped), refused \(s.clientsRefused))"),
            ("malformed lines", String(s.malformedLines)),
            ("last error", s.lastError ?? "-"),
        ])
    }

    /// `ok`, `missing (…)`, `read-only (last punch: fallocate …: EPERM)`.
    static func backendState(_ b: BackendState) -> String {
        let why: String? = switch b.condition {
        case .ok: nil
        case .missing: "the path no longer names the file held open"
        case .readOnly, .failing: b.lastPunchError.map { "last punch: \($0)" + (b.lastPunchErrno.map { " (errno \($0))" } ?? "") }
        }
        return b.condition.rawValue + (why.map { " (\($0))" } ?? "")
    }
}

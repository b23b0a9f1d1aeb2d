// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

// serve's side of the guest's free-memory mode (docs/free-memory.md):
// `--free-memory-reporting` asks for it once frame reporting is on, and
// `serve-status` counts what the mode gave back.

extension GuestPeer {
    /// Right after `set-frame-reporting` at the start of a session: the guest
    /// answers in order, so frame reporting is on when this arrives.
    func requestFreeMemoryReporting() {
        guard options.freeMemoryReporting else { return }
        guard ledger != nil else {
            options.log("--free-memory-reporting needs --memory-backend: without it nothing is freed; not asked")
            return
        }
        guestRequest(.setFreeMemoryReporting(enabled: true), for: .freeMemoryReporting)
    }

    func freeMemoryReportingReply(_ result: Result<JSON, ProtocolError>) {
        switch result {
        case let .success(value):
            let reply = try? FreeMemoryReportingReply(json: value)
            status.freeMemoryReporting = reply?.enabled ?? true
            options.log("free-memory reporting on (cushion \(reply.map { HumanBytes.format($0.cushion) } ?? "?"), cold cache \(reply?.coldCache == true ? "on" : "off"))")
        case let .failure(error):
            status.freeMemoryReporting = false
            status.lastError = "set-free-memory-reporting failed: \(error)"
            options.log("set-free-memory-reporting failed: \(error)")
        }
    }

    /// After each frame report: the frames held above the desired target are
    /// the mode's (the balloon follows the larger of the two), and each rise
    /// of that share is memory the mode returned.
    func countFreeMemoryFreed() {
        guard status.freeMemoryReporting, let ledger else { return }
        let held = ledger.heldBytes
        let host = status.desiredTarget ?? 0
        let share = held > host ? held - host : 0
        if share > freeMemoryShare { status.freeMemoryBytesFreed += share - freeMemoryShare }
        freeMemoryShare = share
    }
}

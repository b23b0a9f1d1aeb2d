// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem

// serve's frames → punch → ack: each FRAMES_* event is checked by the
// ledger, the accepted ranges punched out of the RAM backend, then the
// event acknowledged (docs/protocol.md "Frame reporting: ordering").

extension GuestPeer {
    func frameEvent(_ event: Event, _ link: GuestLink) {
        // nil: not a report at all (refused whole, nothing to acknowledge).
        let typed = try? GuestEvent(event)
        guard ledger != nil, let puncher else {
            // No backend: nothing to free. Acknowledge (ignored) if there is a seq.
            if let r = typed?.frameReport {
                guestRequest(.framesAck(seq: r.seq), for: .ack(r.seq))
            }
            return
        }
        // Rule 3: a session that has ended frees nothing more. The peer may
        // have closed with this event still unread: check before punching.
        if StreamIO.peerClosed(link.fd) {
            disconnect("the guest closed the connection (\(event.name) not acted upon)")
            return
        }
        let now = clock()
        let decision = typed.flatMap { ledger!.handle($0, now: now) } ?? ledger!.refuseMalformed()
        let failuresBefore = puncher.failures
        if !decision.punches.isEmpty { puncher.punch(decision.punches) }
        if puncher.failures > failuresBefore {
            let text = puncher.lastError.map { "\($0)" } ?? "a range beyond guest RAM"
            status.lastError = "punch failed: \(text)"
            options.log("punch failed: \(text)")
        }
        if decision.refused.total > 0, lastRefusalLog.map({ now - $0 >= .seconds(1) }) ?? true {
            lastRefusalLog = now
            let r = ledger!.refused
            options.log("\(event.name) seq \(decision.seq.map(String.init) ?? "?"): refused ranges (totals: outside RAM \(r.outsideRam), overlap \(r.overlap), rate limit \(r.rateLimit), malformed \(r.malformed))")
        }
        countFreeMemoryFreed()
        if let seq = decision.seq {
            guestRequest(.framesAck(seq: seq), for: .ack(seq))
        }
    }
}

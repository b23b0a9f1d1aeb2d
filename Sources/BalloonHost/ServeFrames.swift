// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem

// serve's frames → punch → ack: each FRAMES_* event is checked by the
// ledger, the accepted ranges punched out of the RAM backend, then the
// event acknowledged (docs/protocol.md "Frame reporting: ordering"). A
// FRAMES_INFLATED is acted on only while the daemon that sent it is known
// alive (LivenessProof.swift, rule 5); otherwise it and every frame event
// after it wait, in order, for the reply to a probe (a `frames-ack` that
// names the daemon's lifetime), and are abandoned if a new lifetime answers.

extension GuestPeer {
    /// Frame events waiting for a sign of life, at most this many (a guest
    /// that floods them while not answering is dropped).
    static let maxHeldFrameEvents = 4096

    func frameEvent(_ event: Event, _ link: GuestLink) {
        // nil: not a report at all (refused whole, nothing to acknowledge).
        let typed = try? GuestEvent(event)
        guard ledger != nil, puncher != nil else {
            // No backend: nothing to free. Acknowledge (ignored) if there is a seq.
            if let r = typed?.frameReport {
                guestRequest(.framesAck(seq: r.seq, instance: liveness.instance), for: .ack(r.seq, instance: liveness.instance))
            }
            return
        }
        if !heldFrameEvents.isEmpty || (typed.map(Self.frees) ?? false && !liveness.allowsFreeing(now: clock())) {
            guard heldFrameEvents.count < Self.maxHeldFrameEvents else {
                return disconnect("the guest sent \(Self.maxHeldFrameEvents) frame reports without answering serve's probe")
            }
            heldFrameEvents.append((event, typed))
            requestSignOfLife()
            return
        }
        actOnFrames(event, typed, link)
    }

    /// Only a FRAMES_INFLATED makes the host free memory.
    private static func frees(_ event: GuestEvent) -> Bool {
        if case .framesInflated = event { true } else { false }
    }

    /// Acts on the held events in order while the sign of life allows it.
    func releaseHeldFrames() {
        guard let link else { return }
        var done = 0
        defer { heldFrameEvents.removeFirst(min(done, heldFrameEvents.count)) }
        while done < heldFrameEvents.count {
            let (event, typed) = heldFrameEvents[done]
            if typed.map(Self.frees) ?? false, !liveness.allowsFreeing(now: clock()) {
                requestSignOfLife()
                return
            }
            done += 1
            actOnFrames(event, typed, link)
            guard self.link === link else { return }  // disconnected meanwhile
        }
    }

    /// A probe: a no-op `frames-ack` naming the reporting lifetime. Its
    /// success proves that lifetime alive when it was sent; `StaleInstance`
    /// says it is gone. Before the `set-frame-reporting` reply there is
    /// nothing to name: that reply releases what waits.
    func requestSignOfLife() {
        guard !probeOutstanding, let instance = liveness.instance else { return }
        probeOutstanding = true
        guestRequest(.framesAck(seq: lastAckedSeq, instance: instance), for: .probe(instance: instance))
    }

    /// The daemon that reported frames has been replaced (a reply of its
    /// successor refused an ack naming it): what it reported and serve has
    /// not acted on is abandoned, never freed, and the session starts over
    /// with the new daemon (rule 5).
    func reportingLifetimeEnded(_ instance: String, _ error: ProtocolError) {
        guard liveness.instance == instance, let link else { return }
        let abandoned = abandonHeldFrames()
        status.daemonRestarts += 1
        options.log("the guest's balloond was restarted (lifetime \(instance) is gone: \(error)); \(HumanBytes.format(abandoned)) it reported were never freed; starting over")
        startSession(link)
    }

    /// Drops the frame events waiting for a sign of life and the session's
    /// frame state; returns the bytes of the reports never acted upon.
    @discardableResult
    func abandonHeldFrames() -> UInt64 {
        var bytes: UInt64 = 0
        for case let (_, .framesInflated(r)?) in heldFrameEvents {
            bytes += r.ranges.reduce(0) { $0 &+ $1.count &* r.pageSize }
        }
        status.bytesAbandoned += bytes
        heldFrameEvents.removeAll()
        probeOutstanding = false
        liveness.reset()
        ledger?.resetSession()
        status.frameReporting = false
        return bytes
    }

    private func actOnFrames(_ event: Event, _ typed: GuestEvent?, _ link: GuestLink) {
        guard let puncher else { return }
        // Rule 3: a session that has ended frees nothing more. The peer may
        // have closed with this event still unread: check before punching.
        if StreamIO.peerClosed(link.fd) {
            disconnect("the guest closed the connection (\(event.name) not acted upon)")
            return
        }
        let now = clock()
        let decision = typed.flatMap { ledger!.handle($0, now: now) } ?? ledger!.refuseMalformed()
        let failuresBefore = puncher.failures
        if !decision.punches.isEmpty {
            // A slice allocated after this punch would undo it.
            populateQueue.cancel(decision.punches)
            puncher.punch(decision.punches)
            if !liveness.finishedWithinGrace(now: clock()) {
                options.log("error: punched \(event.name) seq \(decision.seq.map(String.init) ?? "?") after the guest's grace time had passed since its last sign of life: the guest may have been using those frames (serve was stalled)")
            }
        }
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
            lastAckedSeq = max(lastAckedSeq, seq)
            guestRequest(.framesAck(seq: seq, instance: liveness.instance), for: .ack(seq, instance: liveness.instance))
        }
        // After the ack: the guest never waits for this.
        if options.populateOnDeflate, !decision.populate.isEmpty, !puncher.populateUnsupported, populateWanted {
            populateQueue.add(decision.populate)
            loop.populating.insert(id)
        }
    }

    /// Whether what the guest just took back is to be allocated again. With
    /// `populateBelowTargetOnly`, only when the balloon (the frames still held,
    /// after this deflate) is below the desired target: the guest deflated on
    /// its own, for memory it is about to use. A deflate toward a lower target
    /// stays at or above it, and the guest may never touch what it releases.
    var populateWanted: Bool {
        guard options.populateBelowTargetOnly else { return true }
        guard let target = status.desiredTarget, let ledger else { return false }
        return ledger.heldBytes < target
    }

    /// Allocates one slice of what the guest took back; false when nothing
    /// more waits (the loop then stops calling).
    func populateSlice() -> Bool {
        guard let puncher, let range = populateQueue.next() else { return false }
        let failuresBefore = puncher.populateFailures
        if puncher.populate(range), let prefaulter { prefault(range, prefaulter) }
        if puncher.populateUnsupported {
            populateQueue.removeAll()
            log("the memory backend cannot allocate ranges (\(puncher.lastPopulateError.map { "\($0)" } ?? "unsupported")): the guest faults memory it takes back in itself")
        } else if puncher.populateFailures > failuresBefore {
            let now = clock()
            if lastPopulateLog.map({ now - $0 >= .seconds(60) }) ?? true {
                lastPopulateLog = now
                log("populate failed: \(puncher.lastPopulateError.map { "\($0)" } ?? "?") (\(puncher.populateFailures) so far); the guest faults those pages in itself")
            }
        }
        return !populateQueue.isEmpty
    }

    private func prefault(_ range: RamMap.FileRange, _ prefaulter: Prefaulter) {
        let now = clock()
        switch prefaulter.prefault(range, now: now) {
        case .mapped, .off:
            reportedNoMapping = false
        case let .failed(error) where prefaulter.denied:
            log("cannot read the memory of the process that maps the memory backend (\(error)): memory the guest takes back is not mapped ahead of the guest; serve needs ptrace access to QEMU (its user, or CAP_SYS_PTRACE)")
        case .noMapping:
            if !reportedNoMapping {
                reportedNoMapping = true
                log("no process maps the memory backend shared and writable (looked in /proc/*/maps): QEMU faults memory the guest takes back in itself")
            }
        case let .failed(error):
            if lastPrefaultLog.map({ now - $0 >= .seconds(60) }) ?? true {
                lastPrefaultLog = now
                log("prefault failed: \(error) (\(prefaulter.failures) so far); QEMU faults those pages in itself")
            }
        }
    }
}

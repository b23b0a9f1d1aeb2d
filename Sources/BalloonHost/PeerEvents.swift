// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonProtocol
import BalloonStats

// What a peer learns from its guest's events (the balloon's size, STATS
// samples for the policy), and the v1 commands control clients send it.

extension GuestPeer {
    /// BALLOON_CHANGE, TARGET_*, DEFLATED and STATS: the balloon's size, and
    /// a sample for the policy's fast path.
    func observe(_ event: Event) {
        guard let typed = try? GuestEvent(event) else { return }
        switch typed {
        case let .balloonChange(p):
            balloon(at: p.actual)
        case let .targetReached(p):
            agent.held = nil
            balloon(at: p.actual)
        case let .targetUnreachable(p, reason):
            agent.held = reason
            balloon(at: p.actual)
        case let .deflated(d):
            agent.actual = d.actual
            loop.deflated(self)
        case let .stats(reply):
            observe(reply)
        case .framesInflated, .framesDeflated:
            return
        }
    }

    /// A STATS event's data: the balloon's size, the guest's floor (a reload
    /// may change it; `query` at sync gave the first) and the policy's sample.
    func observe(_ reply: StatsReply) {
        balloon(at: reply.balloonActual)
        if let floor = reply.memAvailableFloor { agent.availableFloor = floor }
        agent.stats = reply
        qmp?.observe(reply)
        guard let sample = GuestSample(reply, at: clock()) else { return }
        agent.sample = sample
        loop.sampled(self)
    }

    /// The balloon's size as the guest reports it; a growth goes to the
    /// policy (`HostPolicy.grew`).
    private func balloon(at actual: UInt64) {
        let before = agent.actual
        agent.actual = actual
        if let before, actual > before { loop.grew(self) }
    }

    /// A control client's v1 command for this guest.
    func forward(_ command: Command, client: UInt64, id requestID: JSON?) {
        guard let link, link.synced else {
            return loop.replyToClient(client, Response(id: requestID, result: .failure(ProtocolError(.genericError, ServeCommand.notConnected))))
        }
        var target: UInt64?
        var previous: UInt64?
        if case let .setTarget(t) = command {
            // Recorded now, so a re-apply racing with this call uses it;
            // restored if the guest refuses it.
            target = t
            previous = status.desiredTarget
            status.desiredTarget = t
            agent.reason = "set by an operator"
        }
        guestRequest(command, for: .forward(client: client, id: requestID, target: target, previousDesired: previous))
    }
}

extension GuestSample {
    /// A STATS event's sample; nil without the two sizes the policy needs.
    init?(_ reply: StatsReply, at now: Duration) {
        guard let total = reply.stats[.totalMemory], let available = reply.stats[.availableMemory] else { return nil }
        self.init(
            at: now, memTotal: total, memAvailable: available, reclaimableHeld: reply.freeMemoryHeld,
            psiSomeAvg10: reply.pressure?.some?.avg10, psiFullAvg10: reply.pressure?.full?.avg10,
            psiSomeTotal: reply.pressure?.some?.total, fileRefaults: reply.fileRefaults,
            majorFaults: reply.stats[.majorFaults], swapIn: reply.stats[.swapIn], swapOut: reply.stats[.swapOut],
            memFree: reply.stats[.freeMemory], balloonActual: reply.balloonActual)
    }
}

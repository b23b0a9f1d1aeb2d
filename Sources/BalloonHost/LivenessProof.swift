// SPDX-License-Identifier: Apache-2.0

/// Whether the guest daemon that reports frames is known to be alive recently
/// enough for the host to free them (docs/protocol.md, "Frame reporting:
/// ordering", rule 5). On virtio-serial the host's connection outlives the
/// guest's daemon, so a host that stalled can read a dead daemon's
/// `FRAMES_INFLATED` late; by then the guest may use that memory again. The
/// guest keeps unacknowledged memory for its grace time after the daemon
/// dies, so a reply from that daemon to a request sent at `t` means its
/// memory stays put until at least `t + grace`. Pure: the session feeds it
/// replies and the loop's clock.
struct LivenessProof: Equatable {
    enum State: Equatable {
        /// No `set-frame-reporting` reply yet: nothing may be freed.
        case awaiting
        /// A daemon without `instance` (older than rule 5): no check possible.
        case unchecked
        /// The lifetime that reports, and how long its memory outlives it.
        case checked(instance: String, grace: Duration)
    }

    private(set) var state = State.awaiting
    /// When the newest request was sent whose successful reply came from
    /// the reporting lifetime.
    private(set) var provenAt: Duration?

    /// The reporting lifetime, named in every `frames-ack`.
    var instance: String? {
        if case let .checked(instance, _) = state { instance } else { nil }
    }

    /// The `set-frame-reporting` reply (sent at `sentAt`) names the lifetime;
    /// its success is itself a sign of life.
    mutating func start(instance: String?, grace: Duration?, sentAt: Duration) {
        guard let instance else {
            state = .unchecked
            provenAt = nil
            return
        }
        state = .checked(instance: instance, grace: max(.zero, grace ?? .zero))
        provenAt = sentAt
    }

    /// The session ended or the lifetime is gone: wait for the next reply.
    mutating func reset() {
        state = .awaiting
        provenAt = nil
    }

    /// A request sent at `sentAt` naming `instance` succeeded.
    mutating func proven(instance named: String?, sentAt: Duration) {
        guard case let .checked(instance, _) = state, named == instance else { return }
        provenAt = max(provenAt ?? sentAt, sentAt)
    }

    /// Whether frees wait for signs of life: not for a daemon without a
    /// lifetime, nor one whose memory dies with it (grace zero: its balloon
    /// is in its own process, `HolderProcesses=no`), where no wait helps.
    var checksLiveness: Bool {
        if case let .checked(_, grace) = state { grace > .zero } else { false }
    }

    /// Frees may start now: the sign of life is younger than half the grace
    /// time. The other half covers the punches themselves and a guest clock
    /// that runs a little differently.
    func allowsFreeing(now: Duration) -> Bool {
        switch state {
        case .awaiting: return false
        case .unchecked: return true
        case let .checked(_, grace):
            guard grace > .zero else { return true }
            guard let provenAt else { return false }
            return now - provenAt <= grace / 2
        }
    }

    /// After freeing: false if it ended past the grace time, when the guest
    /// may already have used that memory again (worth an error in the log).
    func finishedWithinGrace(now: Duration) -> Bool {
        guard checksLiveness, case let .checked(_, grace) = state, let provenAt else { return true }
        return now - provenAt <= grace
    }
}

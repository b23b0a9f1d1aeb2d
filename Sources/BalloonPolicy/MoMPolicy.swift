// SPDX-License-Identifier: Apache-2.0

/// `Mode=mom`: oVirt MoM's `doc/balloon.rules`, ported rule for rule.
///
/// In MoM a guest's `balloon_cur` is the memory the guest has (here
/// `ramSize − actual`), `balloon_max` its most (Max), `mem_unused` its free
/// memory (MemFree; MemAvailable when not reported), and the host's
/// `mem_free / mem_available` is our host `available / total`. `StatAvg` is
/// the mean of the last 10 samples (`sample-history-length`), taken at most
/// every 5 s (`host-monitor-interval`, `guest-monitor-interval`); the rules
/// run every 10 s (`policy-engine-interval`).
public struct MoMPolicy: HostPolicy {
    public var mode: PolicyMode { .mom }
    public let interval: Duration
    /// An extra cap on one step (`[Policy] MaxStep=`); MoM itself has none.
    public let maxStep: UInt64?

    // balloon.rules' constants.
    public static let pressureThreshold = 0.20
    public static let pressureCritical = 0.05
    public static let minGuestFreePercent = 0.20
    public static let maxBalloonChangePercent = 0.05
    public static let minBalloonChangePercent = 0.0025
    /// mom.conf's defaults.
    public static let historyLength = 10
    public static let sampleSpacing: Duration = .seconds(5)

    private var hostFree = MovingAverage(capacity: historyLength)
    private var lastHostSample: Duration?
    private var guests: [String: History] = [:]

    struct History {
        var balloonCur = MovingAverage(capacity: MoMPolicy.historyLength)
        var memUnused = MovingAverage(capacity: MoMPolicy.historyLength)
        var last: Duration
    }

    public init(interval: Duration = .seconds(10), maxStep: UInt64? = nil) {
        self.interval = interval
        self.maxStep = maxStep
    }

    public mutating func sampled(guest: GuestState, host: HostSample, now: Duration) -> [TargetChange] {
        record(guest)
        record(host)
        return []
    }

    public mutating func round(host: HostSample, guests states: [GuestState], now: Duration) -> [TargetChange] {
        record(host)
        for state in states { record(state) }
        let names = Set(states.map(\.name))
        guests = guests.filter { names.contains($0.key) }
        guard let free = hostFree.mean, host.total > 0 else { return [] }
        let hostFreePercent = free / Double(host.total)
        var changes: [TargetChange] = []
        for state in states where state.managed {
            guard let history = guests[state.name], let size = Self.rule(state, history, hostFreePercent) else { continue }
            var target = state.clamped(state.ramSize.signed - Int64(size.rounded(.down)))
            if let maxStep {
                target = Swift.min(Swift.max(target, state.target &- Swift.min(maxStep, state.target)), state.target &+ maxStep)
            }
            guard target != state.target else { continue }
            let verb = hostFreePercent < Self.pressureThreshold ? "shrink" : "grow"
            changes.append(TargetChange(
                guest: state.name, target: target,
                reason: "mom: \(verb), host free \(Int((hostFreePercent * 100).rounded()))%"))
        }
        return changes
    }

    /// The guest memory the rules want, or nil when they leave it alone.
    static func rule(_ state: GuestState, _ history: History, _ hostFreePercent: Double) -> Double? {
        guard let avgCur = history.balloonCur.mean, let avgUnused = history.memUnused.mean else { return nil }
        let cur = Double(state.memory)
        let max = Double(Swift.min(state.limits.max, state.ramSize))
        let used = avgCur - avgUnused
        let size: Double
        if hostFreePercent < pressureThreshold {
            // shrink_guest: scale the free memory a guest keeps by host pressure;
            // at critical pressure make it negative (force the guest to swap).
            let guestFreePercent = hostFreePercent <= pressureCritical
                ? -0.05 + hostFreePercent
                : minGuestFreePercent * (hostFreePercent / pressureThreshold)
            let balloonMin = used + guestFreePercent * cur
            size = Swift.max(cur * (1 - maxBalloonChangePercent), balloonMin)
            guard size <= cur else { return nil }
        } else {
            // grow_guest: only a ballooned guest grows, 5% a step, at least to
            // its used memory plus 20% of its maximum.
            guard cur < max else { return nil }
            let balloonMin = used + minGuestFreePercent * max
            size = Swift.max(Swift.min(cur * (1 + maxBalloonChangePercent), max), balloonMin)
        }
        // change_big_enough
        guard Swift.abs(size - cur) > minBalloonChangePercent * cur else { return nil }
        return size
    }

    private mutating func record(_ host: HostSample) {
        if let last = lastHostSample, host.at < last + Self.sampleSpacing { return }
        lastHostSample = host.at
        hostFree.add(Double(Swift.min(host.available, host.total)))
    }

    private mutating func record(_ state: GuestState) {
        guard let sample = state.sample else { return }
        if let last = guests[state.name]?.last, sample.at < last + Self.sampleSpacing { return }
        var history = guests[state.name] ?? History(last: sample.at)
        history.last = sample.at
        history.balloonCur.add(Double(state.memory))
        history.memUnused.add(Double(sample.memFree ?? sample.memAvailable))
        guests[state.name] = history
    }
}

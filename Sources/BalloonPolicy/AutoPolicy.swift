// SPDX-License-Identifier: Apache-2.0

/// `Mode=auto`: balloond's own policy (formulas in docs/policy.md).
///
/// Every round it keeps each guest near its headroom — taking spare memory
/// above it (faster, and past the headroom down to half of it, while the
/// host is below its reserve), giving back to guests below it from the
/// host's surplus, pressured guests first — and between rounds `sampled`
/// gives a guest memory back the moment its stats show pressure.
public struct AutoPolicy: HostPolicy {
    public var mode: PolicyMode { .auto }
    public let interval: Duration
    public let reserve: UInt64
    public let tuning: AutoTuning
    /// Per guest, between calls (internal: AutoBurst.swift reads it too).
    var guests: [String: AutoGuest] = [:]
    /// The guests taking memory back at once, as of the last round or a
    /// `DEFLATED` since (AutoBurst.swift).
    var bursting: Set<String> = []

    public init(interval: Duration = .seconds(1), reserve: UInt64 = 512 << 20, tuning: AutoTuning = AutoTuning()) {
        self.interval = interval
        self.reserve = reserve
        self.tuning = tuning
    }

    /// One guest as a round sees it.
    struct View {
        let state: GuestState
        /// Available to the guest once the balloon reaches its target:
        /// MemAvailable + reclaimableHeld + (actual when sampled − target).
        let available: Int64
        let headroom: Int64
        let band: Int64
        let pressured: Bool
        let holdingOff: Bool
        /// Stalled right after its cache was taken (`SpareStalledCache=`).
        let cacheSpared: Bool
        let current: Bool
        /// How far a host shortfall may squeeze the guest: the low-water mark
        /// (half the headroom) plus half the band, so MemAvailable's jitter at
        /// the bottom of a squeeze is not taken for pressure.
        let squeezeFloor: Int64
        /// MemFree once the balloon reaches its target, above headroom + band:
        /// memory no workload holds (page cache is not free).
        let freeSpare: Int64
        var spare: Int64 { available - headroom }
        /// What a take may use: the spare memory, or while holding off after
        /// pressure only the part of it that is free. A guest's balloond
        /// grows back only into memory that stays free during its own quiet
        /// period (docs/pressure.md), so asking for that is not asking for
        /// the memory that stalled it; the workload that stalled has ended.
        var takeable: Int64 { holdingOff ? Swift.min(spare, freeSpare) : spare }
        /// How far a host shortfall may squeeze it: to `squeezeFloor`, or
        /// while holding off, no further than `takeable`.
        var squeezeRoom: Int64 { holdingOff ? takeable : available - squeezeFloor }
        /// How far a shortfall that nothing else covers may squeeze it: while
        /// holding off, its page cache too, down to headroom + band, unless
        /// it stalled the last time that was taken.
        var lastRoom: Int64 { holdingOff && !cacheSpared ? spare - band : squeezeRoom }
        var deficit: Int64 { headroom - available }
        /// Shares as a weight on taking: more shares, less taken.
        var takeWeight: Double { 1000 / Double(Swift.max(state.limits.shares, 1)) }
    }

    /// A guest's headroom with its boost (the fast path's low-water mark and
    /// give-back size).
    func headroom(_ state: GuestState, boost: Double) -> Int64 {
        let base = Swift.max(tuning.headroomMinimum.signed, Int64(Double(state.ramSize) * tuning.headroomFraction))
        return Int64(Double(base) * boost)
    }

    /// The least MemAvailable the guest's own balloond lets its balloon
    /// leave it: its floor plus `guestFloorMargin` (0 when not known).
    func floorEdge(_ state: GuestState) -> Int64 {
        state.availableFloor.map { $0.signed + tuning.guestFloorMargin.signed } ?? 0
    }

    func band(_ state: GuestState) -> Int64 {
        Swift.max(tuning.bandMinimum.signed, Int64(Double(state.ramSize) * tuning.bandFraction))
    }

    /// MemAvailable is as of the balloon's size when the sample was taken;
    /// once the balloon is at the target, the guest has that much more (or less).
    static func available(_ state: GuestState, _ sample: GuestSample) -> Int64 {
        sample.memAvailable.signed + sample.reclaimableHeld.signed + toTarget(state, sample)
    }

    /// MemFree as of the balloon at its target (0 when the guest does not say).
    static func free(_ state: GuestState, _ sample: GuestSample) -> Int64 {
        guard let free = sample.memFree else { return 0 }
        return free.signed + toTarget(state, sample)
    }

    /// What the guest gains (or loses) once the balloon goes from its size
    /// when sampled to the target.
    static func toTarget(_ state: GuestState, _ sample: GuestSample) -> Int64 {
        (sample.balloonActual ?? state.actual).signed - state.target.signed
    }

    // MARK: the fast path

    public mutating func sampled(guest state: GuestState, host: HostSample, now: Duration) -> [TargetChange] {
        guard let sample = state.sample else { return [] }
        var memory = guests[state.name] ?? AutoGuest()
        defer { guests[state.name] = memory }
        let previous = memory.previous
        memory.previous = sample
        guard state.managed, now < sample.at + tuning.staleAfter else { return [] }
        memory.decay(now: now, tuning)
        let available = Self.available(state, sample)
        // The low-water test is on what the guest has with the balloon where
        // it is now, or will have once a pending deflate lands. A target the
        // guest has not inflated to yet (its balloond may be waiting out its
        // own quiet period) is the policy's ask, not the guest's shortage:
        // counted as pressure, it gave everything back, boosted the headroom
        // and held off, round after round.
        let asIs = available + state.target.signed - state.actual.signed
        let lowWaterAvailable = Swift.max(available, asIs)
        guard let why = pressureSignal(
            sample, previous: previous, available: lowWaterAvailable, headroom: headroom(state, boost: memory.boost), tuning)
        else { return [] }
        memory.pressured(now: now, tuning)
        // Give back at once: at least one (boosted) headroom, and enough to
        // bring the guest to twice it. The guest's own balloond has already
        // let go of memory under pressure; starting below min(target, actual)
        // keeps what it let go of.
        let h = headroom(state, boost: memory.boost)
        let give = Swift.max(h, 2 * h - available)
        let from = Swift.min(state.target, state.actual).signed
        let target = state.clamped(from - give)
        guard target < state.target else { return [] }
        memory.lastChange = now
        return [TargetChange(guest: state.name, target: target, reason: "auto: pressure (\(why)): give back \(mib(state.target.signed - target.signed))")]
    }

    // MARK: the round

    public mutating func round(host: HostSample, guests states: [GuestState], now: Duration) -> [TargetChange] {
        let names = Set(states.map(\.name))
        guests = guests.filter { names.contains($0.key) }
        let bursting = tuning.burstYield ? takingBackAtOnce(states, now: now) : []
        self.bursting = Set(bursting)
        var views: [View] = []
        for state in states where state.managed {
            guard let sample = state.sample, now < sample.at + tuning.staleAfter else { continue }
            var memory = guests[state.name] ?? AutoGuest()
            memory.decay(now: now, tuning)
            if memory.previous == nil { memory.previous = sample }
            guests[state.name] = memory
            let available = Self.available(state, sample)
            // A round neither takes nor squeezes past the guest's own floor:
            // the guest would refuse the target (docs/policy.md).
            let edge = floorEdge(state)
            let h = Swift.max(headroom(state, boost: memory.boost), edge)
            let b = band(state)
            views.append(View(
                state: state, available: available, headroom: h, band: b,
                pressured: memory.lastPressure.map { now < $0 + interval * 2 } ?? false,
                holdingOff: memory.holdingOff(now: now),
                cacheSpared: memory.cacheSpared(now: now),
                // A sample from before the last change does not show it yet:
                // acting on it would take (or give) the same memory twice.
                current: memory.lastChange.map { sample.at > $0 } ?? true,
                squeezeFloor: Swift.max(Int64(Double(h) * tuning.lowWater) + b / 2, edge),
                freeSpare: Self.free(state, sample) - h - b))
        }
        // Over a budget the host is short by the reserve and the overshoot.
        let hostAvailable = Swift.min(host.available, host.total).signed - host.overBudget.signed
        var changes: [String: (Int64, String)] = [:]
        let movable = views.filter(\.current)
        give(movable, surplus: hostAvailable - reserve.signed - tuning.hostBand.signed, into: &changes)
        let urgent = bursting.isEmpty ? nil : machineShort(host)
        if bursting.isEmpty || urgent != nil {
            // Never from the guest taking memory back, whatever its stats say.
            let despite = urgent.map { "no yield to \(bursting.joined(separator: ", ")): \($0)" }
            let from = movable.filter { !bursting.contains($0.state.name) }
            take(from, need: reserve.signed - hostAvailable, despite: despite, into: &changes)
        } else {
            // A hold is on the balloon's size, not on the guest's stats: a
            // sample from before the last change does not matter to it.
            hold(views.map(\.state), yieldingTo: bursting, grew: { self.guests[$0.name]?.grewSinceRound ?? false }, into: &changes)
        }
        return views.compactMap { view in
            guard let (delta, why) = changes[view.state.name], let change = change(view.state, by: delta, why, now: now) else { return nil }
            // More than `squeezeRoom` is only ever taken from the cache.
            if delta > Swift.max(view.squeezeRoom, 0) { guests[view.state.name]?.cacheTaken = now }
            return change
        }
    }

    /// The target `delta` away from the guest's (clamped to its limits), noted
    /// as its last change; nil when clamping leaves the target where it is.
    mutating func change(_ state: GuestState, by delta: Int64, _ why: String, now: Duration) -> TargetChange? {
        let target = state.clamped(state.target.signed + delta)
        guard target != state.target else { return nil }
        guests[state.name, default: AutoGuest()].lastChange = now
        return TargetChange(guest: state.name, target: target, reason: "auto: \(why)")
    }

    /// Gives guests below their headroom memory from the host's surplus,
    /// pressured guests first, then the largest deficits: each up to
    /// headroom + band/2, the middle of the dead band.
    private func give(_ views: [View], surplus: Int64, into changes: inout [String: (Int64, String)]) {
        var left = surplus
        let needy = views.filter { $0.deficit > 0 }
            .sorted { ($0.pressured ? 1 : 0, $0.deficit) > ($1.pressured ? 1 : 0, $1.deficit) }
        for view in needy where left > 0 {
            let room = view.state.target.signed - view.state.lowestTarget.signed
            let give = Swift.min(view.deficit + view.band / 2, left, room)
            guard give > 0 else { continue }
            left -= give
            changes[view.state.name] = (-give, "below headroom \(mib(view.headroom)): give back \(mib(give))")
        }
    }

    /// Takes spare memory (above headroom + band) in proportion to spare ×
    /// 1000/Shares: a `trimRate` share each round, and while the host is
    /// short by `need`, that much spread over the guests by the same weights;
    /// if spare memory cannot cover it, down to half the headroom. Never from
    /// a guest under pressure, and from one holding off only its free memory
    /// (`takeable`) until nothing else covers the shortfall (`lastRoom`); at
    /// most `maxStep` a round, at least half the band (smaller shares are
    /// rounded up where there is room).
    /// `despite`: why a burst does not hold the round (`machineShort`), for the reason.
    private func take(_ views: [View], need: Int64, despite: String? = nil, into changes: inout [String: (Int64, String)]) {
        let candidates = views.filter { changes[$0.state.name] == nil && !$0.pressured }
        let step = tuning.maxStep.signed
        var taken: [String: Int64] = [:]
        for view in candidates where view.takeable > view.band {
            taken[view.state.name] = Swift.min(view.takeable, Int64(Double(view.takeable) * tuning.trimRate * view.takeWeight))
        }
        var short = need - taken.values.reduce(0, +)
        if short > 0 {
            short = spread(short, over: candidates, into: &taken, step: step) { $0.takeable }
        }
        if short > 0 {
            short = spread(short, over: candidates, into: &taken, step: step) { $0.squeezeRoom }
        }
        // Still short: a guest holding off gives its page cache too, down to
        // its boosted headroom and band. The hold-off spares a guest's cache
        // while the host can afford it; over the host's need it kept guests
        // at 700 MiB available for minutes while the host was 1 GiB over its
        // budget (bench-host, 4127550).
        let cacheToo = short > 0
        if cacheToo {
            short = spread(short, over: candidates.filter(\.holdingOff), into: &taken, step: step) { $0.lastRoom }
        }
        for view in candidates {
            guard let bytes = taken[view.state.name], bytes > 0 else { continue }
            // A move smaller than half the band is not worth a message: a
            // share of a shortfall spread thin is rounded up to it where the
            // guest has the room (the host then stays above its reserve for
            // a while), and dropped where it has not.
            let least = view.band / 2
            let room = Swift.min(cacheToo ? view.lastRoom : view.squeezeRoom, step)
            guard bytes >= least || room >= least else { continue }
            let take = Swift.min(Swift.max(bytes, least), step)
            let why = need > 0 ? "host short \(mib(need))" : "spare \(mib(view.spare))"
            changes[view.state.name] = (take, "\(why): take \(mib(take))" + (despite.map { " (\($0))" } ?? ""))
        }
    }

    /// Spreads `amount` over `views` in proportion to room × weight, each
    /// up to its room (what `limit` allows, at most `step`, less what it
    /// gives already); returns what is left. Water-filling in one pass: with
    /// shares ∝ room × weight, a guest is filled exactly when the level
    /// (what is left / Σ room × weight) times its weight reaches 1, so the
    /// heaviest weights fill first — O(n log n), not a loop per guest.
    private func spread(
        _ amount: Int64, over views: [View], into taken: inout [String: Int64], step: Int64, limit: (View) -> Int64
    ) -> Int64 {
        let open = views.compactMap { v -> (View, Int64)? in
            let room = Swift.min(limit(v), step) - taken[v.state.name, default: 0]
            return room > 0 ? (v, room) : nil
        }.sorted { $0.0.takeWeight > $1.0.takeWeight }
        var left = amount
        var denominator = open.reduce(0.0) { $0 + Double($1.1) * $1.0.takeWeight }
        var i = 0
        while i < open.count, left > 0, Double(left) * open[i].0.takeWeight >= denominator {
            let (view, room) = open[i]
            let bytes = Swift.min(room, left)
            taken[view.state.name, default: 0] += bytes
            left -= bytes
            denominator -= Double(room) * view.takeWeight
            i += 1
        }
        guard left > 0, denominator > 0 else { return left }
        let level = Double(left) / denominator
        for (view, room) in open[i...] where left > 0 {
            let bytes = Swift.min(room, left, Int64((level * Double(room) * view.takeWeight).rounded(.up)))
            taken[view.state.name, default: 0] += bytes
            left -= bytes
        }
        return left
    }
}

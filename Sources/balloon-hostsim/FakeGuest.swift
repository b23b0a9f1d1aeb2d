// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonStats

/// A fake guest: what a balloond in a VM would answer, driven by a seeded
/// workload instead of a kernel. Cheap on purpose (a few arithmetic
/// operations per stats sample) so one process can hold a thousand.
struct FakeGuest {
    let name: String
    let ram: UInt64
    let pageSize: UInt64 = 4096
    var target: UInt64 = 0
    var actual: UInt64 = 0
    var statsInterval: Duration?
    var nextStats: Duration = .zero
    private var random: SplitMix
    private var phase = Phase(kind: .idle, level: 0, until: .zero)
    private var lastAdvance: Duration?
    private var psiSome = 0.0
    private var psiFull = 0.0
    private var psiSomeTotal: UInt64 = 0
    private var psiFullTotal: UInt64 = 0
    private var majorFaults: UInt64 = 0
    private var fileRefaults: UInt64 = 0
    private var minorFaults: UInt64 = 0
    private var swapIn: UInt64 = 0
    private var swapOut: UInt64 = 0
    private(set) var deflated: UInt64 = 0

    struct Phase {
        enum Kind: CaseIterable { case idle, cache, ramp, burst, loop }
        var kind: Kind
        /// The share of RAM the workload needs in this phase.
        var level: Double
        var until: Duration
    }

    init(name: String, ram: UInt64, seed: UInt64, statsInterval: Duration?) {
        self.name = name
        self.ram = ram
        self.statsInterval = statsInterval
        random = SplitMix(seed)
    }

    /// What the kernel keeps for itself (never available).
    var kernel: UInt64 { ram / 20 }
    var memory: UInt64 { ram - Swift.min(actual, ram) }

    /// The workload's demand: a seeded schedule of phases (idle, page-cache
    /// growth, an anonymous ramp to 70% of RAM, a burst, a working-set loop).
    mutating func demand(at now: Duration) -> UInt64 {
        if now >= phase.until {
            let kind = Phase.Kind.allCases[Int(random.next() % 5)]
            let seconds = 20 + Int64(random.next() % 100)
            let level: Double = switch kind {
            case .idle: 0.15
            case .cache: 0.25 + Double(random.next() % 20) / 100
            case .ramp: 0.70
            case .burst: 0.80
            case .loop: 0.45
            }
            phase = Phase(kind: kind, level: level, until: now + .seconds(kind == .burst ? 5 : seconds))
        }
        return UInt64(Double(ram) * phase.level)
    }

    /// Moves the guest to `now`: the workload runs, pressure builds when it
    /// needs more than the balloon leaves, and like balloond the guest lets
    /// go of balloon memory under pressure.
    mutating func advance(to now: Duration) {
        let elapsed = lastAdvance.map { (now - $0) } ?? .zero
        lastAdvance = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let need = demand(at: now) + kernel
        let shortfall = need > memory ? need - memory : 0
        let stalled = shortfall == 0 ? 0 : Swift.min(100, 5 + Double(shortfall) / Double(Swift.max(memory, 1)) * 200)
        let decay = Swift.min(1, seconds / 10)
        psiSome += (stalled - psiSome) * decay
        psiFull += (stalled / 4 - psiFull) * decay
        psiSomeTotal += UInt64(stalled / 100 * seconds * 1e6)
        psiFullTotal += UInt64(stalled / 400 * seconds * 1e6)
        minorFaults += UInt64(seconds * 1000)
        if shortfall > 0 {
            majorFaults += shortfall / pageSize
            fileRefaults += shortfall / pageSize
            swapIn += shortfall / 2
            swapOut += shortfall / 2
            let release = Swift.min(actual, shortfall + (64 << 20))
            actual -= release
            deflated += release
        }
    }

    /// The balloon follows its target at once (the simulator is about the
    /// agent, not the chunk stepping), except under pressure (advance).
    mutating func setTarget(_ requested: UInt64) throws(ProtocolError) -> SetTargetReply {
        guard requested <= ram else {
            throw ProtocolError(.invalidParameter, "set-target: target \(requested) exceeds memory-total \(ram)")
        }
        target = requested / pageSize * pageSize
        actual = target
        return SetTargetReply(target: target, effectiveTarget: target, actual: actual)
    }

    func info() -> InfoReply {
        InfoReply(
            version: BalloondVersion.current, pageSize: pageSize, memoryTotal: ram, maxBalloon: ram - ram / 10,
            memAvailableFloor: 64 << 20, chunkSize: 64 << 20, transparentHugePages: false, hugePageAdvice: .leave,
            channel: "unix:\(name)", pressureTriggers: [], holderProcesses: false, protectedFromOOMKiller: false)
    }

    func query() -> QueryReply {
        QueryReply(
            target: target, effectiveTarget: target, actual: actual, state: actual == target ? .idle : .unreachable,
            limits: .init(memoryTotal: ram, maxBalloon: ram - ram / 10, memAvailableFloor: 64 << 20, chunkSize: 64 << 20),
            reason: actual == target ? nil : StopReason(code: .pressure, desc: "the guest was under memory pressure"),
            pressure: .init(state: actual == target ? .calm : .backoff, ceiling: actual == target ? nil : actual,
                            quietFor: nil, deflatedTotal: deflated, lastDeflate: nil))
    }

    mutating func stats(at now: Duration, wallClock: Timestamp) -> StatsReply {
        let need = demand(at: now) + kernel
        let available = need < memory ? memory - need : 0
        var s = VirtioStats()
        s[.swapIn] = swapIn
        s[.swapOut] = swapOut
        s[.majorFaults] = majorFaults
        s[.minorFaults] = minorFaults
        s[.freeMemory] = available / 2
        // balloond holds the balloon inside the guest: MemTotal stays the RAM.
        s[.totalMemory] = ram
        s[.availableMemory] = available
        s[.diskCaches] = available / 2
        s[.oomKills] = 0
        let line = { (avg: Double, total: UInt64) in PressureLine(avg10: (avg * 100).rounded() / 100, avg60: 0, avg300: 0, total: total) }
        return StatsReply(
            stats: s, pressure: Pressure(some: line(psiSome, psiSomeTotal), full: line(psiFull, psiFullTotal)),
            balloonTarget: target, balloonActual: actual, fileRefaults: fileRefaults, timestamp: wallClock)
    }
}

/// SplitMix64: a small seeded generator (a guest's schedule depends only on
/// the seed and its index).
struct SplitMix {
    private var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

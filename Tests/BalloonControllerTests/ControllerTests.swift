// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing
@testable import BalloonController

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

final class FakeClock: MonotonicClock {
    var now: Duration = .seconds(1000)
    func advance(_ duration: Duration) { now += duration }
}

/// A reserver's failure below the controller, as a `SystemError` prints.
struct FakeCause: Error, Sendable, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func change(_ actual: UInt64, _ target: UInt64) -> GuestEvent { .balloonChange(BalloonProgress(actual: actual, target: target)) }
func reached(_ actual: UInt64, _ target: UInt64) -> GuestEvent { .targetReached(BalloonProgress(actual: actual, target: target)) }
func deflated(_ bytes: UInt64, _ reason: DeflateReason, actual: UInt64) -> GuestEvent {
    .deflated(DeflatedEvent(bytes: bytes, reason: reason, actual: actual, timing: nil))
}

final class FakeProbe: MemoryProbe {
    var available: UInt64?
    init(_ available: UInt64?) { self.available = available }
    func availableBytes() -> UInt64? { available }
}

/// Holds a stack of sizes like the real reserver; lowers the probe's
/// MemAvailable as it grows, as mlocked memory does.
final class FakeReserver: MemoryReserver {
    var chunks: [UInt64] = []
    var log: [String] = []
    var failNext: ReserveError?
    let probe: FakeProbe?
    init(probe: FakeProbe? = nil) { self.probe = probe }
    var heldBytes: UInt64 { chunks.reduce(0, +) }
    func grow(by bytes: UInt64) throws(ReserveError) {
        if let failNext { self.failNext = nil; throw failNext }
        chunks.append(bytes)
        log.append("+\(bytes / MiB)")
        if let probe, let a = probe.available { probe.available = a - bytes }
    }
    func shrink(by bytes: UInt64) {
        var left = bytes
        while left > 0, let last = chunks.last {
            if last <= left { chunks.removeLast(); left -= last } else { chunks[chunks.count - 1] = last - left; left = 0 }
        }
        log.append("-\(bytes / MiB)")
        if let probe, let a = probe.available { probe.available = a + bytes }
    }
}

struct Rig {
    let clock = FakeClock()
    let probe: FakeProbe
    let reserver: FakeReserver
    let controller: BalloonController

    init(total: UInt64 = 8 * GiB, max: UInt64? = nil, floor: UInt64 = 256 * MiB, chunk: UInt64 = 64 * MiB, available: UInt64? = 7 * GiB) {
        probe = FakeProbe(available)
        reserver = FakeReserver(probe: probe)
        let limits = BalloonLimits(memoryTotal: total, maxBalloon: max ?? total * 8 / 10, availableFloor: floor, chunkSize: chunk, pageSize: 4096)
        controller = BalloonController(limits: limits, clock: clock, probe: probe, reserver: reserver)
    }

    /// Steps until the controller stops asking for more, advancing the clock
    /// by `perStep` each step; returns the number of steps.
    @discardableResult
    func run(perStep: Duration = .milliseconds(10), limit: Int = 10_000) -> (steps: Int, outcome: StepOutcome) {
        var steps = 0
        while steps < limit {
            let outcome = controller.step()
            steps += 1
            clock.advance(perStep)
            if outcome != .more { return (steps, outcome) }
        }
        return (steps, .more)
    }
}

@Suite struct TargetsAndClamps {
    @Test func inflatesInChunksToTheTarget() throws {
        let rig = Rig()
        try rig.controller.setTarget(256 * MiB)
        #expect(rig.controller.state == .inflating)
        let (steps, outcome) = rig.run()
        #expect(outcome == .idle)
        #expect(rig.reserver.log == ["+64", "+64", "+64", "+64"])
        #expect(steps == 5)  // four chunks, then the settling step
        #expect(rig.controller.actual == 256 * MiB)
        #expect(rig.controller.state == .idle)
        #expect(rig.controller.reason == nil)
    }

    @Test func lastChunkIsPartialSoActualEqualsTarget() throws {
        let rig = Rig()
        try rig.controller.setTarget(100 * MiB + 4096 + 123)  // rounded down to a page
        rig.run()
        #expect(rig.controller.target == 100 * MiB + 4096)
        #expect(rig.controller.actual == 100 * MiB + 4096)
        #expect(rig.reserver.chunks == [64 * MiB, 36 * MiB + 4096])
    }

    @Test func deflatesNewestFirstAndShrinksInsideAChunk() throws {
        let rig = Rig()
        try rig.controller.setTarget(192 * MiB)
        rig.run()
        try rig.controller.setTarget(100 * MiB)
        #expect(rig.controller.state == .deflating)
        rig.run()
        #expect(rig.controller.actual == 100 * MiB)
        #expect(rig.reserver.chunks == [64 * MiB, 36 * MiB])
        try rig.controller.setTarget(0)
        rig.run()
        #expect(rig.controller.actual == 0)
        #expect(rig.reserver.chunks.isEmpty)
    }

    @Test func targetAboveMemoryIsRefused() {
        let rig = Rig(total: 1 * GiB)
        #expect(throws: TargetError.exceedsMemory(target: 2 * GiB, memoryTotal: 1 * GiB)) {
            try rig.controller.setTarget(2 * GiB)
        }
        #expect(rig.controller.target == 0)
    }

    @Test func targetAboveMaxIsClampedWithReason() throws {
        let rig = Rig(total: 1 * GiB, max: 512 * MiB, available: 900 * MiB)
        try rig.controller.setTarget(768 * MiB)
        #expect(rig.controller.effectiveTarget == 512 * MiB)
        rig.run()
        #expect(rig.controller.actual == 512 * MiB)
        #expect(rig.controller.state == .unreachable)
        let reason = StopReason(code: .maxBalloon, desc: "the target exceeds the maximum balloon of \(512 * MiB) bytes (MaxBalloon=)")
        #expect(rig.controller.reason == reason)
        let events = rig.controller.takeEvents()
        #expect(events.last == .targetUnreachable(BalloonProgress(actual: 512 * MiB, target: 768 * MiB), reason: reason))
    }

    @Test func floorStopsInflationAndIsRetried() throws {
        // 1 GiB available, floor 256 MiB + 16 MiB headroom: at most 752 MiB
        // can be locked, so jitter around the floor is not blamed on the balloon.
        let rig = Rig(available: 1 * GiB)
        try rig.controller.setTarget(2 * GiB)
        let (_, outcome) = rig.run()
        #expect(rig.controller.actual == 752 * MiB)
        #expect(rig.probe.available == 272 * MiB)
        guard case let .waitUntil(when) = outcome else { Issue.record("expected a retry, got \(outcome)"); return }
        #expect(when > rig.clock.now - .milliseconds(10))
        #expect(rig.controller.state == .unreachable)
        #expect(rig.controller.reason?.code == .memAvailableFloor)
        let first = rig.controller.takeEvents()
        #expect(first.filter { if case .targetUnreachable = $0 { true } else { false } }.count == 1)

        // Before the retry time the controller does nothing.
        #expect(rig.controller.step() == outcome)
        // A retry that ends the same way is not announced again.
        rig.clock.advance(BalloonController.retryInterval)
        rig.run()
        #expect(rig.controller.takeEvents().isEmpty)

        // Memory frees up: the retry moves on and reaches the target.
        rig.probe.available = 4 * GiB
        rig.clock.advance(BalloonController.retryInterval)
        rig.run()
        #expect(rig.controller.actual == 2 * GiB)
        #expect(rig.controller.takeEvents().last == reached(2 * GiB, 2 * GiB))
    }

    @Test func floorTakesAPartialChunkUpToTheFloorAndHeadroom() throws {
        let rig = Rig(available: 256 * MiB + 16 * MiB + 10 * MiB)
        try rig.controller.setTarget(64 * MiB)
        rig.run()
        #expect(rig.reserver.chunks == [10 * MiB])
    }

    @Test func reserveFailureIsReportedAndRetried() throws {
        let rig = Rig()
        let failure = ReserveError(.outOfMemory, cause: FakeCause("mlock 67108864 bytes: Resource temporarily unavailable"))
        rig.reserver.failNext = failure
        try rig.controller.setTarget(128 * MiB)
        let (_, outcome) = rig.run()
        #expect(rig.controller.actual == 0)
        #expect(rig.controller.reserveFailure == failure)
        #expect(rig.controller.reason == StopReason(
            code: .reserveFailed, desc: "the kernel refused memory: mlock 67108864 bytes: Resource temporarily unavailable (the guest has no memory to spare)"))
        guard case .waitUntil = outcome else { Issue.record("expected a retry"); return }
        rig.clock.advance(BalloonController.retryInterval)
        rig.run()
        #expect(rig.controller.actual == 128 * MiB)
        #expect(rig.controller.reason == nil)
    }

    /// The cause is kept: a locked-memory limit reads differently from a
    /// guest out of memory, and the failure itself stays at hand.
    @Test(arguments: [
        (ReserveError.Kind.memoryLockLimit, "mlock 67108864 bytes: Cannot allocate memory (the locked-memory limit is too low: RLIMIT_MEMLOCK, LimitMEMLOCK= in the unit)"),
        (.outOfMemory, "mlock 67108864 bytes: Cannot allocate memory (the guest has no memory to spare)"),
        (.other, "mlock 67108864 bytes: Cannot allocate memory"),
    ])
    func reserveFailureSaysWhichLimitRefused(kind: ReserveError.Kind, desc: String) throws {
        let rig = Rig()
        rig.reserver.failNext = ReserveError(kind, cause: FakeCause("mlock 67108864 bytes: Cannot allocate memory"))
        try rig.controller.setTarget(64 * MiB)
        rig.run()
        #expect(rig.controller.reserveFailure?.kind == kind)
        #expect(rig.controller.reserveFailure?.cause is FakeCause)
        let events = rig.controller.takeEvents()
        guard case let .targetUnreachable(_, reason)? = events.last else { Issue.record("no TARGET_UNREACHABLE: \(events)"); return }
        #expect(reason == StopReason(code: .reserveFailed, desc: "the kernel refused memory: " + desc))
    }

    @Test func unknownAvailableMemoryDoesNotBlock() throws {
        let rig = Rig(available: nil)
        try rig.controller.setTarget(64 * MiB)
        rig.run()
        #expect(rig.controller.actual == 64 * MiB)
    }
}

@Suite struct PreemptionAndEvents {
    @Test func newTargetPreemptsAnInflationBetweenChunks() throws {
        let rig = Rig()
        try rig.controller.setTarget(1 * GiB)
        #expect(rig.controller.step() == .more)
        #expect(rig.controller.step() == .more)
        #expect(rig.controller.actual == 128 * MiB)
        try rig.controller.setTarget(64 * MiB)  // arrives between two loop turns
        rig.run()
        #expect(rig.controller.actual == 64 * MiB)
        #expect(rig.reserver.log == ["+64", "+64", "-64"])
    }

    @Test func balloonChangeAtMostOncePerSecondWhileMoving() throws {
        let rig = Rig(chunk: 4 * MiB)
        try rig.controller.setTarget(1 * GiB)  // 256 steps of 10 ms: 2.56 s of movement
        rig.run(perStep: .milliseconds(10))
        let events = rig.controller.takeEvents()
        let changes = events.compactMap { if case let .balloonChange(p) = $0 { p.actual } else { nil } }
        // One at the start, one per elapsed second, one on arrival.
        #expect(changes.count >= 3 && changes.count <= 4)
        #expect(changes == changes.sorted())
        #expect(changes.last == 1 * GiB)
        #expect(events.last == reached(1 * GiB, 1 * GiB))
        #expect(events.dropLast().allSatisfy { if case .balloonChange = $0 { true } else { false } })
    }

    @Test func arrivalDoesNotRepeatTheLastChangeAcrossTakes() throws {
        // Slow chunks: every step is more than a second apart, so each move
        // is reported as it happens, and the caller takes events after each step.
        let rig = Rig()
        try rig.controller.setTarget(128 * MiB)
        var events: [GuestEvent] = []
        while true {
            let outcome = rig.controller.step()
            events += rig.controller.takeEvents()
            rig.clock.advance(.milliseconds(1500))
            if outcome != .more { break }
        }
        #expect(events == [
            change(64 * MiB, 128 * MiB),
            change(128 * MiB, 128 * MiB),
            reached(128 * MiB, 128 * MiB),
        ])
    }

    @Test func arrivalIsAnnouncedEvenWithoutMovement() throws {
        let rig = Rig()
        try rig.controller.setTarget(0)
        rig.run()
        #expect(rig.controller.takeEvents() == [change(0, 0), reached(0, 0)])
        // Nothing new, nothing said.
        #expect(rig.controller.step() == .idle)
        #expect(rig.controller.takeEvents().isEmpty)
    }

    @Test func limitsUpdateMovesTheBalloon() throws {
        let rig = Rig(total: 1 * GiB, max: 512 * MiB, available: 900 * MiB)
        try rig.controller.setTarget(512 * MiB)
        rig.run()
        rig.controller.updateLimits(BalloonLimits(memoryTotal: 1 * GiB, maxBalloon: 256 * MiB, availableFloor: 0, chunkSize: 64 * MiB, pageSize: 4096))
        rig.run()
        #expect(rig.controller.actual == 256 * MiB)
        #expect(rig.controller.reason?.code == .maxBalloon)
    }

    @Test func limitsAreSanitised() {
        let limits = BalloonLimits(memoryTotal: 1 * GiB, maxBalloon: 2 * GiB, availableFloor: 0, chunkSize: 10_000, pageSize: 4096)
        #expect(limits.maxBalloon == 1 * GiB)
        #expect(limits.chunkSize == 8192)
    }
}

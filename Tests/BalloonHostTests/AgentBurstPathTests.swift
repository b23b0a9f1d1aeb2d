// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// The agent's burst path (docs/policy.md, "Yielding to a burst"): a real
/// agent loop in `auto` (in this process, on a thread) and two fake guests on
/// unix sockets. `a` reaches every target at once; `b` inflates slowly (its
/// balloon stays at 64 MiB). When `a`'s balloond gives back under pressure,
/// its `DEFLATED` alone, before any round sees the fall, stops `b` where its
/// balloon is.
@Suite(.serialized) struct AgentBurstPathTests {
    /// A guest of 1 GiB with 900 MiB available, its balloon at `actual`.
    static func stats(actual: UInt64, target: UInt64) -> StatsReply {
        let json: JSON = [
            "stats": ["total-memory": .uint(GiB), "available-memory": .uint(900 * MiB), "free-memory": .uint(900 * MiB)],
            "balloon": ["target": .uint(target), "actual": .uint(actual)],
            "timestamp": ["seconds": 1_795_000_000, "microseconds": 0],
        ]
        return try! StatsReply(json: json)
    }

    typealias Flag = MetricsServerLimits.StateBox

    /// How a fake guest's balloon answers targets.
    struct Role {
        /// Follows every target at once (else it stays at 64 MiB).
        var reaches = false
        /// Once that many targets came, gives everything back under pressure
        /// (a `DEFLATED`) and sets `burst`.
        var burstAfter: Int?
        /// Its balloond holds it short of every target (`TARGET_UNREACHABLE`,
        /// its quiet period) until `burst` is set; then it grows by 32 MiB.
        var quietUntilBurst = false
    }

    static func guest(_ g: FakeGuest, _ role: Role, burst: Flag, stop: Flag, recorder: Recorder) {
        guard g.awaitSync() else { return }
        var target: UInt64 = 0, actual: UInt64 = role.reaches ? 0 : 64 * MiB, targets = 0
        while !stop.isSet {
            // STATS every 100 ms: the policy rounds act only on fresh samples.
            if let r = g.readRequest(timeoutMs: 100) {
                recorder.add(r.execute)
                guard case let .setTarget(t)? = try? Command(r) else {
                    g.answer(r)
                    continue
                }
                target = t
                targets += 1
                if role.reaches { actual = t }
                g.reply(r, SetTargetReply(target: t, effectiveTarget: t, actual: actual).json)
                let progress = BalloonProgress(actual: actual, target: t)
                g.event(role.reaches ? .targetReached(progress)
                    : role.quietUntilBurst && !burst.isSet ? .targetUnreachable(progress, reason: StopReason(code: .pressure, desc: "quiet period"))
                    : .balloonChange(progress))
                if let n = role.burstAfter, targets == n {
                    g.event(.deflated(DeflatedEvent(bytes: actual, reason: .memAvailableFloor, actual: 0, timing: nil)))
                    actual = 0
                    burst.set()
                }
            } else if role.quietUntilBurst, burst.isSet, actual == 64 * MiB {
                actual += 32 * MiB
                g.event(.balloonChange(BalloonProgress(actual: actual, target: target)))
            }
            g.event(.stats(stats(actual: actual, target: target)))
        }
    }

    /// Two guests of 1 GiB under a 2 GiB budget (the host is short, so each
    /// round takes), in `auto` with `policy` added to `[Policy]`, `a` and `b`
    /// playing their roles; returns the agent's log once `until` holds for
    /// one of its lines (or after 60 s).
    func run(policy: String, a: Role, b: Role, until: @escaping @Sendable (String) -> Bool) throws -> [String] {
        let dir = TempDir()
        defer { dir.remove() }
        mkdir(dir.path + "/g", 0o755)
        let config = "[Host]\nControl=\(dir.path)/control\nHostMemory=2G\nGuestDirectory=\(dir.path)/g\n"
            + "[Policy]\nMode=auto\n\(policy)[Discovery]\nLibvirt=no\n"
        try config.write(toFile: dir.path + "/h.conf", atomically: false, encoding: .utf8)
        for name in ["a", "b"] {
            try "[Guest]\nChannel=unix:\(dir.path)/\(name).sock\nRamSize=1G\nMin=16M\nMax=1G\n"
                .write(toFile: dir.path + "/g/\(name).conf", atomically: false, encoding: .utf8)
        }
        let stop = Flag(), burst = Flag(), recorder = Recorder(), lines = Recorder()
        let ga = try serveOnce(path: dir.path + "/a.sock") { Self.guest($0, a, burst: burst, stop: stop, recorder: recorder) }
        let gb = try serveOnce(path: dir.path + "/b.sock") { Self.guest($0, b, burst: burst, stop: stop, recorder: recorder) }
        let agent = try HostAgent(configPath: dir.path + "/h.conf", required: true) { lines.add($0) }
        let running = MetricsServerLimits.Running(agent)
        defer {
            #expect(running.stop())
            stop.set()
            ga.join()
            gb.join()
        }
        #expect(waitUntil(timeout: .seconds(60)) { lines.all.contains(where: until) }, "\(lines.all.joined(separator: "\n"))")
        return lines.all
    }

    /// `a` bursts at its second target (one round has seen its balloon at the first).
    @Test func aDeflateHoldsTheOtherGuestBeforeTheNextRound() throws {
        let lines = try run(policy: "", a: Role(reaches: true, burstAfter: 2), b: Role()) { $0.hasPrefix("b: target") && $0.contains("(its DEFLATED)") }
        let line = try #require(lines.first { $0.contains("(its DEFLATED)") })
        #expect(line.contains("-> 64 MiB (auto: a taking memory back at once (its DEFLATED): stop inflating at 64 MiB)"), "\(line)")
    }

    /// `BurstHoldGrowth=yes`: `b`'s balloond holds it at 64 MiB, so `a`'s
    /// DEFLATED leaves it alone; when it grows to 96 MiB during the burst,
    /// its BALLOON_CHANGE alone stops it there.
    @Test func aBalloonThatGrowsDuringABurstIsHeldAtOnce() throws {
        let lines = try run(policy: "BurstHoldGrowth=yes\n", a: Role(reaches: true, burstAfter: 2), b: Role(quietUntilBurst: true)) {
            $0.hasPrefix("b: target") && $0.contains("taking memory back at once")
        }
        let line = try #require(lines.first { $0.hasPrefix("b: target") && $0.contains("taking memory back at once") })
        #expect(line.contains("-> 96 MiB (auto: a taking memory back at once (b's balloon grew): stop inflating at 96 MiB)"), "\(line)")
    }
}

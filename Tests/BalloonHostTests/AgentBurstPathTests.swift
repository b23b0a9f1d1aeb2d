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

    /// `reaches`: the guest's balloon follows every target at once (else it
    /// stays at 64 MiB). With `burstAfter`, once that many targets came, it
    /// gives everything back under pressure (a `DEFLATED`).
    static func guest(_ g: FakeGuest, reaches: Bool, burstAfter: Int?, stop: Flag, recorder: Recorder) {
        guard g.awaitSync() else { return }
        var target: UInt64 = 0, actual: UInt64 = reaches ? 0 : 64 * MiB, targets = 0
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
                if reaches { actual = t }
                g.reply(r, SetTargetReply(target: t, effectiveTarget: t, actual: actual).json)
                g.event(reaches ? .targetReached(.init(actual: actual, target: t)) : .balloonChange(.init(actual: actual, target: t)))
                if let n = burstAfter, targets == n {
                    g.event(.deflated(DeflatedEvent(bytes: actual, reason: .memAvailableFloor, actual: 0, timing: nil)))
                    actual = 0
                }
            }
            g.event(.stats(stats(actual: actual, target: target)))
        }
    }

    @Test func aDeflateHoldsTheOtherGuestBeforeTheNextRound() throws {
        let dir = TempDir()
        defer { dir.remove() }
        mkdir(dir.path + "/g", 0o755)
        // Two guests of 1 GiB under a 2 GiB budget: the host is short, so each round takes.
        let config = "[Host]\nControl=\(dir.path)/control\nHostMemory=2G\nGuestDirectory=\(dir.path)/g\n"
            + "[Policy]\nMode=auto\n[Discovery]\nLibvirt=no\n"
        try config.write(toFile: dir.path + "/h.conf", atomically: false, encoding: .utf8)
        for name in ["a", "b"] {
            try "[Guest]\nChannel=unix:\(dir.path)/\(name).sock\nRamSize=1G\nMin=16M\nMax=1G\n"
                .write(toFile: dir.path + "/g/\(name).conf", atomically: false, encoding: .utf8)
        }
        let stop = Flag(), recorder = Recorder(), lines = Recorder()
        // `a` bursts at its second target: one round has seen its balloon at the first.
        let a = try serveOnce(path: dir.path + "/a.sock") { Self.guest($0, reaches: true, burstAfter: 2, stop: stop, recorder: recorder) }
        let b = try serveOnce(path: dir.path + "/b.sock") { Self.guest($0, reaches: false, burstAfter: nil, stop: stop, recorder: recorder) }
        let agent = try HostAgent(configPath: dir.path + "/h.conf", required: true) { lines.add($0) }
        let running = MetricsServerLimits.Running(agent)
        defer {
            #expect(running.stop())
            stop.set()
            a.join()
            b.join()
        }
        let held = "b: target"
        #expect(waitUntil(timeout: .seconds(60)) { lines.all.contains { $0.hasPrefix(held) && $0.contains("(its DEFLATED)") } },
                "\(lines.all.joined(separator: "\n"))")
        let line = try #require(lines.all.first { $0.contains("(its DEFLATED)") })
        #expect(line.contains("-> 64 MiB (auto: a taking memory back at once (its DEFLATED): stop inflating at 64 MiB)"), "\(line)")
    }
}

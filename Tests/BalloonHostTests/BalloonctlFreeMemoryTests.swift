// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import Testing

/// `balloonctl query` and `stats` as text show the free-memory mode's
/// fields, as their JSON does (docs/free-memory.md).
extension BalloonctlTests {
    @Test func queryAndStatsShowTheFreeMemoryMode() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let MiB: UInt64 = 1 << 20
        let base = try QueryReply(json: Canned.query(target: 256 * MiB, effective: 768 * MiB, actual: 768 * MiB, state: .idle))
        let query = QueryReply(
            target: base.target, effectiveTarget: base.effectiveTarget, actual: base.actual, state: base.state, limits: base.limits,
            reason: nil, pressure: base.pressure,
            freeMemory: .init(allowed: true, enabled: true, cushion: 130 * MiB, target: 768 * MiB, held: 512 * MiB,
                              coldCache: .init(state: .backoff, reclaimedTotal: 96 * MiB)))
        let t1 = try guest(at: sock, query: query.json)
        let q = run(exe, ["query", "--unix", sock], in: dir)
        t1.join()
        #expect(q.status == 0, "\(q.stderr)")
        #expect(q.stdout.contains("effective target  768 MiB"))
        #expect(q.stdout.contains("free-memory mode    on"))
        #expect(q.stdout.contains("cushion             130 MiB"))
        #expect(q.stdout.contains("free-memory target  768 MiB"))
        #expect(q.stdout.contains("free memory held    512 MiB"))
        #expect(q.stdout.contains("cold page cache     backoff, 96 MiB reclaimed"))
        let t2 = try guest(at: sock)
        let s = run(exe, ["stats", "--unix", sock], in: dir)
        t2.join()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stdout.contains("free memory held \(HostFormat.bytes(Canned.statsReply.freeMemoryHeld)) (not in available-memory)"))
    }

    @Test func queryFromADaemonWithoutTheModeHasNoFreeMemoryBlock() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let t = try guest(at: sock, query: Canned.query(target: 0, actual: 0, state: .idle))
        let q = run(exe, ["query", "--unix", sock], in: dir)
        t.join()
        #expect(q.status == 0, "\(q.stderr)")
        #expect(!q.stdout.contains("free-memory mode"))
    }
}

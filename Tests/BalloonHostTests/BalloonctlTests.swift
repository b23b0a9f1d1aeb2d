// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import Glibc
import Testing

/// balloonctl end to end: the built executable against a fake guest on a
/// real unix socket.
@Suite struct BalloonctlTests {
    let exe = balloonctlPath()

    /// Serves one balloonctl run: sync, info, query, stats, set-stats-interval
    /// as canned; `onSet` answers set-target.
    func guest(
        at path: String, query: JSON = Canned.query(target: 0, actual: 0, state: .idle),
        onSet: @escaping @Sendable (FakeGuest, Request) -> Void = { g, r in
            g.reply(r, ["target": r.arguments["target"] ?? 0, "effective-target": r.arguments["target"] ?? 0, "actual": 0])
        }
    ) throws -> TestThread {
        try serveOnce(path: path) { g in
            // Stale bytes a previous host left unread.
            g.write("{\"return\":{},\"id\":3}\n")
            while let r = g.readRequest() {
                switch try? Command(r) {
                case .sync?: g.answerSync(r)
                case .info?: g.reply(r, Canned.info)
                case .query?: g.reply(r, query)
                case .stats?: g.reply(r, Canned.stats)
                case .setTarget?: onSet(g, r)
                case let .setStatsInterval(interval)?:
                    g.reply(r, StatsIntervalReply(interval: interval).json)
                    for _ in 0..<3 { g.event(.stats(Canned.statsReply)) }
                default: g.fail(r, .commandNotFound, "no command \(r.execute)")
                }
            }
        }
    }

    @Test func executableIsBuilt() {
        #expect(access(exe, X_OK) == 0, "balloonctl not found at \(exe)")
    }

    @Test func infoJSON() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock)
        defer { thread.join() }
        let r = run(exe, ["info", "--unix", sock, "--json"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == Canned.info.serialized() + "\n")
        #expect(r.stderr.isEmpty)
    }

    @Test func infoHuman() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock)
        defer { thread.join() }
        let r = run(exe, ["info", "--unix", sock], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("version                 0.1.0"))
        #expect(r.stdout.contains("chunk size              64 MiB"))
        #expect(r.stdout.contains("transparent huge pages  yes"))
    }

    @Test func setWaitShowsProgressUntilReached() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let target: UInt64 = 256 << 20
        let thread = try guest(at: sock) { g, r in
            #expect(r.arguments["target"]?.uint64 == target)
            // An event from an earlier movement, before the reply: not ours.
            g.event(.targetReached(.init(actual: 0, target: 0)))
            g.reply(r, ["target": .uint(target), "effective-target": .uint(target), "actual": 0])
            // Back to back: events after the reply (even in the same read) are ours.
            for step in UInt64(1)...4 {
                g.event(.balloonChange(.init(actual: step * 64 << 20, target: target)))
            }
            g.event(.targetReached(.init(actual: target, target: target)))
        }
        defer { thread.join() }
        let r = run(exe, ["set", "256M", "--wait", "--unix", sock], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "target 256 MiB, actual 0 B")
        #expect(lines.contains("actual 192 MiB / target 256 MiB"))
        #expect(lines.filter { $0.hasPrefix("actual ") }.count == 5)
        #expect(lines.last == "target reached")
    }

    @Test func setWaitAlreadyAtTargetNeedsNoEvents() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock) { g, r in
            g.reply(r, ["target": 4096, "effective-target": 4096, "actual": 4096])  // and nothing else
        }
        defer { thread.join() }
        let r = run(exe, ["set", "4096", "--wait", "--wait-timeout", "2", "--unix", sock], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("actual 4 KiB / target 4 KiB: target reached"))
    }

    @Test func unreachableTargetExitsTwo() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock) { g, r in
            g.reply(r, ["target": .uint(8 << 30), "effective-target": .uint(6 << 30), "actual": .uint(5 << 30)])
            g.event(.balloonChange(.init(actual: 6 << 30, target: 8 << 30)))
            g.event(.targetUnreachable(
                .init(actual: 6 << 30, target: 8 << 30), reason: .init(code: .maxBalloon, desc: "the target exceeds max-balloon (6 GiB)")))
        }
        defer { thread.join() }
        let r = run(exe, ["set", "8G", "--wait", "--unix", sock], in: dir)
        #expect(r.status == 2, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr == "balloonctl: target 8 GiB is unreachable: max-balloon: the target exceeds max-balloon (6 GiB) (actual 6 GiB)\n")
    }

    @Test func alreadyStoppedShortQueriesTheReason() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let reason = StopReason(code: .maxBalloon, desc: "the target exceeds max-balloon")
        let thread = try guest(
            at: sock, query: Canned.query(target: 8 << 30, effective: 6 << 30, actual: 6 << 30, state: .unreachable, reason: reason)
        ) { g, r in
            g.reply(r, ["target": .uint(8 << 30), "effective-target": .uint(6 << 30), "actual": .uint(6 << 30)])
        }
        defer { thread.join() }
        let r = run(exe, ["set", "8G", "--wait", "--wait-timeout", "2", "--unix", sock], in: dir)
        #expect(r.status == 2)
        #expect(r.stderr.contains("unreachable: max-balloon: the target exceeds max-balloon"))
    }

    @Test func waitTimeoutQueriesAndReports() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock, query: Canned.query(target: 1 << 30, actual: 512 << 20, state: .inflating)) { g, r in
            g.reply(r, ["target": .uint(1 << 30), "effective-target": .uint(1 << 30), "actual": 0])
        }
        defer { thread.join() }
        let r = run(exe, ["set", "1G", "--wait", "--wait-timeout", "0.3", "--unix", sock], in: dir)
        #expect(r.status == 1)
        #expect(r.stderr == "balloonctl: timed out after 0.3 s waiting for the target: actual 512 MiB / target 1 GiB (state inflating)\n")
    }

    @Test func guestErrorExitsOne() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock) { g, r in
            g.fail(r, .invalidParameter, "set-target: target exceeds memory-total")
        }
        defer { thread.join() }
        let r = run(exe, ["set", "1P", "--unix", sock], in: dir)
        #expect(r.status == 1)
        #expect(r.stderr == "balloonctl: set-target failed: InvalidParameter: set-target: target exceeds memory-total\n")
    }

    /// A hostile guest's text (an error message, a stop reason) reaches the
    /// terminal with its escape sequences and newlines escaped.
    @Test func aGuestsTextIsPrintedWithControlCharactersEscaped() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock) { g, r in
            g.fail(r, .invalidParameter, "\u{1B}]0;owned\u{07}\u{1B}[2Jballoonctl: fake line\nroot# \u{202E}txt")
        }
        defer { thread.join() }
        let r = run(exe, ["set", "1G", "--unix", sock], in: dir)
        #expect(r.status == 1)
        #expect(r.stderr == "balloonctl: set-target failed: InvalidParameter: \\u{1B}]0;owned\\u{7}\\u{1B}[2Jballoonctl: fake line\\u{A}root# \\u{202E}txt\n")

        let reason = StopReason(code: .maxBalloon, desc: "\u{1B}[31mred\u{9B}1m")
        let sock2 = dir.path + "/g2.sock"
        let thread2 = try guest(
            at: sock2, query: Canned.query(target: 8 << 30, effective: 6 << 30, actual: 6 << 30, state: .unreachable, reason: reason))
        defer { thread2.join() }
        let q = run(exe, ["query", "--unix", sock2], in: dir)
        #expect(q.status == 0, "\(q.stderr)")
        #expect(q.stdout.contains("max-balloon: \\u{1B}[31mred\\u{9B}1m"), "\(q.stdout)")
        #expect(!q.stdout.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x9B })
    }

    @Test func missingSocketExitsOne() {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/absent.sock"
        let r = run(exe, ["query", "--unix", sock], in: dir)
        #expect(r.status == 1)
        #expect(r.stderr == "balloonctl: cannot connect to \(sock): No such file or directory\n")
        #expect(r.stdout.isEmpty)
    }

    @Test func usageErrorsExitOne() {
        let dir = TempDir()
        defer { dir.remove() }
        let none = run(exe, ["info"], in: dir)
        #expect(none.status == 1)
        #expect(none.stderr.hasPrefix("balloonctl: say where the guest is"))
        let two = run(exe, ["info", "--unix", "/a", "--vsock", "3:1"], in: dir)
        #expect(two.status == 1)
        #expect(two.stderr.hasPrefix("balloonctl: give only one of"))
        let size = run(exe, ["set", "lots", "--unix", "/a"], in: dir)
        #expect(size.status == 1)
        #expect(size.stderr.hasPrefix("balloonctl: invalid size \"lots\""))
        #expect(run(exe, ["--help"], in: dir).status == 0)
    }

    @Test func queryAndStatsHuman() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let t1 = try guest(at: sock, query: Canned.query(target: 1 << 30, actual: 768 << 20, state: .inflating))
        let q = run(exe, ["query", "--unix", sock], in: dir)
        t1.join()
        #expect(q.status == 0, "\(q.stderr)")
        #expect(q.stdout.contains("effective target  1 GiB"))
        #expect(q.stdout.contains("actual            768 MiB"))
        #expect(q.stdout.contains("reason            -"))
        let t2 = try guest(at: sock)
        let s = run(exe, ["stats", "--unix", sock], in: dir)
        t2.join()
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stdout.contains("available-memory  7 GiB"))
        #expect(s.stdout.contains("htlb-pgfail       -"))
    }

    @Test func watchCountPlainLines() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock, query: Canned.query(target: 256 << 20, actual: 128 << 20, state: .inflating))
        defer { thread.join() }
        let r = run(exe, ["watch", "--interval", "0.1", "--count", "3", "--unix", sock], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines.allSatisfy {
            $0 == "target 256 MiB  actual 128 MiB  state inflating  MemAvailable 7 GiB  MemFree 6.5 GiB  PSI some 1.25 full 0.00"
        })
    }

    @Test func eventsWithStatsInterval() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sock = dir.path + "/g.sock"
        let thread = try guest(at: sock)
        defer { thread.join() }
        let r = run(exe, ["events", "--count", "2", "--stats-interval", "500", "--json", "--unix", sock], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines {
            let message = try Message.decode(Array(line.utf8))
            guard case let .event(e) = message else { Issue.record("not an event: \(line)"); continue }
            #expect(try GuestEvent(e) == .stats(Canned.statsReply))
        }
    }
}

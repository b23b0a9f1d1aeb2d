// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// The host's balloon-hostd, built next to balloonctl.
let hostAgent: String = (hostBalloonctl as NSString).deletingLastPathComponent + "/balloon-hostd"

/// balloon-hostd with two TCG guests whose RAM is in shared files on
/// /dev/shm, under a `HostMemory=` budget smaller than what the two files
/// hold: the budget is enforced (the files' allocated blocks fall under it),
/// and, once the `auto` policy has settled and the budget is cut to what the
/// files hold, pressure in one guest gets it memory back while the other gives
/// more; when the pressure ends the budget holds again.
@Suite(.serialized, .enabled(if: vmTestsEnabled, "set BALLOOND_VM_TESTS=1 (make test does)"))
struct HostAgentVM {
    static let ram: UInt64 = 768 * MiB

    /// The agent's session for a command, synced.
    func agentCall(_ control: String, _ command: AgentCommand) throws -> JSON {
        let session = try GuestSession.open(.unix(path: control), timeout: .seconds(30))
        defer { session.close() }
        return try session.call(command)
    }

    func guests(_ control: String) throws -> [String: GuestSummary] {
        let list = try GuestListReply(json: try agentCall(control, .listGuests))
        return Dictionary(uniqueKeysWithValues: list.guests.map { ($0.name, $0) })
    }

    @Test func budgetEnforcedAndPressureGetsMemoryBack() throws {
        let pid = getpid()
        let backA = "/dev/shm/balloond-hostd-a-\(pid)", backB = "/dev/shm/balloond-hostd-b-\(pid)"
        defer { unlink(backA); unlink(backB) }
        let a = try Guest(name: "hostd-a", memory: "768M", extra: ["--memory-backend", backA])
        let b = try Guest(name: "hostd-b", memory: "768M", extra: ["--memory-backend", backB])
        let dir = a.workdir + "-agent"
        try FileManager.default.createDirectory(atPath: dir + "/guests", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let control = dir + "/control"
        let agent = Process()
        defer { if agent.isRunning { agent.terminate(); agent.waitUntilExit() } }
        try withGuestDiagnostics(a) {
            // Touch most of each guest's RAM, then free it: the files hold it.
            for g in [a, b] {
                try g.sh("mkdir -p /mnt/big && mount -t tmpfs -o size=700M none /mnt/big")
                try g.sh("dd if=/dev/zero of=/mnt/big/fill bs=1M count=560 2>/dev/null; rm /mnt/big/fill", timeout: 300)
                _ = try g.startDaemon(config: "[Channel]\\nListen=virtio-serial:org.balloond.0\\n[Balloon]\\nChunkSize=32M\\nMemAvailableFloor=96M\\n")
            }
            let before = allocatedBytes(backA) + allocatedBytes(backB)
            let budget = before - 400 * MiB
            func writeConfig(budget: UInt64) throws {
                try "[Host]\nControl=\(control)\nGuestDirectory=\(dir)/guests\nHostMemory=\(budget)\n[Policy]\nMode=auto\nHostReserve=32M\n[Discovery]\nLibvirt=no\n"
                    .write(toFile: dir + "/hostd.conf", atomically: false, encoding: .utf8)
            }
            try writeConfig(budget: budget)
            for (name, g, back) in [("a", a, backA), ("b", b, backB)] {
                try "[Guest]\nChannel=unix:\(g.port0)\nMemoryBackend=\(back)\nRamSize=\(Self.ram)\nMin=256M\n"
                    .write(toFile: dir + "/guests/\(name).conf", atomically: false, encoding: .utf8)
            }
            let log = dir + ".log"
            let handle = try emptyLogFile(log)
            defer { try? FileManager.default.removeItem(atPath: log) }
            agent.executableURL = URL(fileURLWithPath: hostAgent)
            agent.arguments = ["--config", dir + "/hostd.conf"]
            agent.standardOutput = handle
            agent.standardError = handle
            try agent.run()
            // The policy's trace, without the audit line of every poll's connection.
            func agentLog() -> String {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
                    .split(separator: "\n").filter { !$0.contains("control client") }.joined(separator: "\n")
            }
            let up = waitUntil(timeout: .seconds(120), interval: .milliseconds(200)) {
                (try? guests(control).values.filter(\.connected).count) == 2
            }
            #expect(up, "the agent did not connect to both guests: \(agentLog())")
            let policy = try PolicyStatusReply(json: try agentCall(control, .policyStatus))
            #expect(policy.budget && policy.hostTotal == budget && policy.mode == "auto")

            // 1. The budget: the files' blocks fall under it.
            let enforced = waitUntil(timeout: .seconds(300), interval: .milliseconds(500)) {
                allocatedBytes(backA) + allocatedBytes(backB) <= budget
            }
            #expect(enforced, "files hold \(allocatedBytes(backA) + allocatedBytes(backB)) over the budget \(budget): \(agentLog())")
            #expect(try guests(control).values.allSatisfy { $0.bytesFreed > 0 })

            // Auto goes on taking idle memory below the budget: wait until
            // neither target has moved for 20 s, so what follows is the ramp's doing.
            func quiet() -> [String: UInt64]? {
                var last: [String: UInt64] = [:], since = ContinuousClock.now
                let still = waitUntil(timeout: .seconds(300), interval: .milliseconds(500)) {
                    guard let g = try? guests(control) else { return false }
                    let now = g.mapValues { $0.target ?? 0 }
                    if now != last { last = now; since = .now }
                    return ContinuousClock.now - since >= .seconds(20)
                }
                return still ? last : nil
            }
            #expect(quiet() != nil, "targets still moving: \(agentLog())")
            // Then a budget with no slack (the reserve and 32 MiB over what the
            // files hold), so what a takes back b must give (reload by SIGHUP).
            let tight = allocatedBytes(backA) + allocatedBytes(backB) + 64 * MiB
            try writeConfig(budget: tight)
            kill(agent.processIdentifier, SIGHUP)
            let reloaded = waitUntil(timeout: .seconds(30), interval: .milliseconds(200)) {
                (try? PolicyStatusReply(json: try agentCall(control, .policyStatus)))?.hostTotal == tight
            }
            #expect(reloaded, "the agent did not take HostMemory=\(tight): \(agentLog())")
            let settled = try #require(quiet(), "targets still moving under \(tight): \(agentLog())")
            let targetA = settled["a"] ?? 0, targetB = settled["b"] ?? 0
            #expect(targetA > 0 && targetB > 0)

            // 2. Pressure in a: its balloon gives memory back (a's balloond
            // deflates itself; auto leaves the target, see docs/policy.md) and
            // the host, short now, takes more from b.
            // Held 30 s, so the host sees a's file grow while a holds it.
            try a.sh("workload ramp 420 200 30 >/tmp/ramp.log 2>&1 & echo $! >/tmp/ramp.pid")
            var lowestA = targetA, highestB = targetB
            let moved = waitUntil(timeout: .seconds(300), interval: .milliseconds(500)) {
                guard let g = try? guests(control), let ga = g["a"], let gb = g["b"] else { return false }
                lowestA = Swift.min(lowestA, ga.actual ?? targetA, ga.target ?? targetA)
                highestB = Swift.max(highestB, gb.target ?? targetB)
                return lowestA + 64 * MiB < targetA && highestB > targetB
            }
            #expect(moved, "from a \(targetA), b \(targetB) to at best a \(lowestA), b \(highestB): \(String(describing: try? guests(control))) \(agentLog())")
            let finished = try waitUntil(timeout: .seconds(300), interval: .milliseconds(500)) {
                try a.run("kill -0 $(cat /tmp/ramp.pid) 2>/dev/null").status != 0
            }
            #expect(finished)
            #expect(!(try a.sh("cat /tmp/ramp.log")).contains("Killed"))
            #expect(try a.sh("dmesg | grep -c 'Out of memory' || true").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            // 3. The ramp's memory freed, the policy takes it back under the budget.
            let again = waitUntil(timeout: .seconds(300), interval: .milliseconds(500)) {
                allocatedBytes(backA) + allocatedBytes(backB) <= tight
            }
            #expect(again, "files hold \(allocatedBytes(backA) + allocatedBytes(backB)) over the budget \(tight): \(agentLog())")
        }
    }
}

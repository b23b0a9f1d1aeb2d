// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Glibc
import Testing

/// `balloonctl serve` is the one-guest form of balloon-hostd's loop: it
/// answers list-guests, guest-status and select-guest for its guest, so
/// `balloonctl list` and `--guest NAME` work against it too; the policy
/// commands are the agent's alone. And balloonctl's new options are checked.
@Suite(.serialized) struct ServeAgentCommands {
    let exe = balloonctlPath()

    @Test func listAndGuestThroughServe() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let gsock = dir.path + "/guest.sock", csock = dir.path + "/control.sock"
        let seen = Recorder()
        let guest = try serveOnce(path: gsock) { g in
            guard g.awaitSync() else { return }
            g.serveAll(recorder: seen)
        }
        let serve = Background(exe, ["serve", "--unix", gsock, "--control", csock], in: dir, name: "serve")
        defer { _ = serve.terminate(); guest.join() }
        #expect(waitForStatus(csock) { $0.guestConnected } != nil, "\(serve.stderrSoFar)")

        let list = run(exe, ["list", "--agent", csock, "--json"], in: dir)
        #expect(list.status == 0, "\(list.stderr)")
        let rows = try GuestListReply(json: try JSON.parse(list.stdout.trimmingCharacters(in: .whitespacesAndNewlines))).guests
        #expect(rows.map(\.name) == [gsock])
        #expect(rows.first?.connected == true && rows.first?.source == "serve" && rows.first?.channel == "unix:\(gsock)")

        // --guest NAME selects serve's guest; the command is forwarded to it.
        let set = run(exe, ["--guest", gsock, "--agent", csock, "set", "64M"], in: dir)
        #expect(set.status == 0, "\(set.stderr)")
        #expect(seen.all.contains("set-target {\"target\":67108864}"))
        let status = run(exe, ["guest-status", gsock, "--agent", csock], in: dir)
        #expect(status.status == 0 && status.stdout.contains("desired target   64 MiB"), "\(status.stdout)\(status.stderr)")

        let unknown = run(exe, ["--guest", "nope", "--agent", csock, "query"], in: dir)
        #expect(unknown.status == 1 && unknown.stderr.contains("no guest \"nope\""), "\(unknown.stderr)")
        let policy = run(exe, ["policy", "--agent", csock], in: dir)
        #expect(policy.status == 1 && policy.stderr.contains("CommandNotFound"), "\(policy.stderr)")
    }

    @Test func optionChecks() {
        let dir = TempDir()
        defer { dir.remove() }
        let agentAlone = run(exe, ["--agent", "/nonexistent", "query"], in: dir)
        #expect(agentAlone.status == 1 && agentAlone.stderr.contains("--agent needs --guest NAME"), "\(agentAlone.stderr)")
        let two = run(exe, ["--guest", "a", "--unix", "/x", "query"], in: dir)
        #expect(two.status == 1 && two.stderr.contains("give only one of"))
        let badPolicy = run(exe, ["policy", "--guest", "a", "sometimes"], in: dir)
        #expect(badPolicy.status == 1 && badPolicy.stderr.contains("not a guest policy"))
        let noAgent = run(exe, ["list", "--agent", dir.path + "/none"], in: dir)
        #expect(noAgent.status == 1 && noAgent.stderr.contains("cannot connect to \(dir.path)/none"), "\(noAgent.stderr)")
    }
}

/// Who may use a control socket (ServeClients.mayControl).
@Suite struct ControlAccessTests {
    @Test func rootAndTheOwnerAlways() {
        #expect(ServeLoop.mayControl(PeerCredentials(pid: 1, uid: 0, gid: 5), owner: 1000))
        #expect(ServeLoop.mayControl(PeerCredentials(pid: 1, uid: 1000, gid: 5), owner: 1000))
        #expect(!ServeLoop.mayControl(PeerCredentials(pid: 1, uid: 1001, gid: 5), owner: 1000))
    }

    @Test func aGroupByPrimaryOrSupplementaryMembership() {
        let other = PeerCredentials(pid: 1, uid: 1001, gid: 5)
        #expect(!ServeLoop.mayControl(other, owner: 1000, group: 77, peerGroups: [4, 6]))
        #expect(ServeLoop.mayControl(other, owner: 1000, group: 77, peerGroups: [4, 77]))
        #expect(ServeLoop.mayControl(PeerCredentials(pid: 1, uid: 1001, gid: 77), owner: 1000, group: 77))
        #expect(!ServeLoop.mayControl(PeerCredentials(pid: 1, uid: 1001, gid: 77), owner: 1000))  // no group configured
    }
}

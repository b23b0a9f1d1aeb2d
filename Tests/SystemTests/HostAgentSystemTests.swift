// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// balloon-hostd with several real balloond on unix sockets on this machine:
/// sessions with every guest in one loop, guests from files and from a
/// watched directory, the control socket (list-guests, select-guest, v1 to a
/// guest, guest-status), SIGHUP reload that leaves the other guests alone.
/// Small balloons (≤ 64 MiB each); run with --no-parallel like every system test.
@Suite(.serialized) struct HostAgentSystem {
    /// The agent's directory: hostd.conf, guests/, a watched sockets/.
    final class AgentBox {
        let dir: String
        var config: String { dir + "/hostd.conf" }
        var control: String { dir + "/control" }
        var guests: String { dir + "/guests" }
        var sockets: String { dir + "/sockets" }

        init(extra: String = "") throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("hostd-test-\(UUID().uuidString.prefix(8))").path
            for d in [dir, dir + "/guests", dir + "/sockets"] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
            let text = "[Host]\nControl=\(control)\nGuestDirectory=\(guests)\n[Policy]\nMode=manual\n[Discovery]\nLibvirt=no\nDirectories=\(sockets)\n" + extra
            try text.write(toFile: config, atomically: false, encoding: .utf8)
        }

        func guest(_ name: String, _ text: String) throws {
            try text.write(toFile: guests + "/\(name).conf", atomically: false, encoding: .utf8)
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// The balloon-hostd executable, stderr collected (ToolProcess, FaultSupport.swift).
    typealias AgentProcess = ToolProcess

    func guests(_ client: RawClient) throws -> [GuestSummary] {
        try GuestListReply(json: try client.value("list-guests")).guests
    }

    func guest(_ client: RawClient, _ name: String) throws -> GuestSummary? {
        try guests(client).first { $0.name == name }
    }

    @Test func threeGuestsFilesDiscoveryControlAndReload() throws {
        let box = try AgentBox()
        // a and b from files, c discovered from its socket in sockets/.
        let a = try Sandbox(config: "[Balloon]\nChunkSize=8M\nMemAvailableFloor=96M\n")
        let b = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let c = try Sandbox(config: "[Channel]\nListen=unix:\(box.sockets)/c.sock\n[Balloon]\nChunkSize=8M\n")
        let da = try DaemonProcess(arguments: ["--config", a.configPath], waitForSocket: a.socket)
        let db = try DaemonProcess(arguments: ["--config", b.configPath], waitForSocket: b.socket)
        try box.guest("a", "[Guest]\nChannel=unix:\(a.socket)\nPolicy=manual\nTarget=16M\n")
        try box.guest("b", "[Guest]\nChannel=unix:\(b.socket)\nPolicy=off\n")

        let agent = try AgentProcess(["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        #expect(waitUntil { (try? guests(client).filter(\.connected).map(\.name)) == ["a", "b"] }, "\(agent.log)")

        // Target= is applied after the sync.
        #expect(waitUntil(timeout: .seconds(30)) { balloonLocked(da.pid) == 16 * MiB }, "\(agent.log)")
        #expect(try guest(client, "a")?.target == 16 * MiB)
        // The guest's own floor, from its query at sync, is what auto keeps clear of.
        #expect(waitUntil { (try? guest(client, "a"))??.availableFloor == 96 * MiB }, "\(agent.log)")
        // A guest's reload that changes it reaches the agent in its next STATS, with no new sync.
        let syncsBefore = try GuestStatusReply(json: try client.value("guest-status", ["name": "a"])).session.reconnects
        try a.writeConfig("[Balloon]\nChunkSize=8M\nMemAvailableFloor=128M\n")
        da.signal(SIGHUP)
        #expect(waitUntil { (try? guest(client, "a"))??.availableFloor == 128 * MiB }, "\(agent.log) \(da.log)")
        #expect(try GuestStatusReply(json: try client.value("guest-status", ["name": "a"])).session.reconnects == syncsBefore)

        // A socket appearing in the watched directory is a guest.
        let dc = try DaemonProcess(arguments: ["--config", c.configPath], waitForSocket: "\(box.sockets)/c.sock")
        #expect(waitUntil { (try? guest(client, "c"))??.connected == true }, "\(agent.log)")
        #expect(try guest(client, "c")?.source == "discovered")

        // v1 needs a guest selected; then it goes to that guest only.
        let refused = try client.call("query")
        guard case let .failure(e) = refused.result else { Issue.record("query without a guest was answered"); return }
        #expect(e.desc.contains("select-guest"))
        let unknown = try client.call("select-guest", ["name": "nope"])
        #expect(unknown.result == .failure(AgentCommand.noSuchGuest("nope")))
        try client.value("select-guest", ["name": "b"])
        var events: [Event] = []
        try client.call("set-target", ["target": .uint(32 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(balloonLocked(db.pid) == 32 * MiB)
        #expect(balloonLocked(dc.pid) == 0)
        // STATS (the agent's 1 s subscription) reach the client from b alone.
        let stats = try client.waitForEvent("STATS", into: &events)
        #expect(stats.data["balloon"]?["actual"]?.uint64 == 32 * MiB)
        let status = try GuestStatusReply(json: try client.value("guest-status", ["name": "b"]))
        #expect(status.session.guestConnected && status.guest.reason == "set by an operator")
        #expect(try guest(client, "b")?.available ?? 0 > 0)

        // Reload: a's file goes, b's changes; c's session is left alone.
        let cBefore = try GuestStatusReply(json: try client.value("guest-status", ["name": "c"])).session
        try FileManager.default.removeItem(atPath: box.guests + "/a.conf")
        try box.guest("b", "[Guest]\nChannel=unix:\(b.socket)\nPolicy=manual\nTarget=8M\n")
        kill(agent.pid, SIGHUP)
        #expect(waitUntil { (try? guests(client).map(\.name)) == ["b", "c"] }, "\(agent.log)")
        #expect(waitUntil(timeout: .seconds(30)) { balloonLocked(db.pid) == 8 * MiB }, "\(agent.log)")
        let cAfter = try GuestStatusReply(json: try client.value("guest-status", ["name": "c"])).session
        #expect(cAfter.guestConnected && cAfter.reconnects == cBefore.reconnects)
        // The removed guest's target stays where it was: the agent only stopped talking to it.
        #expect(balloonLocked(da.pid) == 16 * MiB)
        // The client had selected b, which was replaced: it says so.
        let gone = try client.call("query")
        #expect((try? gone.result.get()) == nil)

        // A discovered guest whose socket goes is removed.
        dc.signal(SIGTERM)
        #expect(dc.waitForExit() == 0)
        #expect(waitUntil { (try? guests(client).map(\.name)) == ["b"] }, "\(agent.log)")

        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0)
        #expect(!FileManager.default.fileExists(atPath: box.control))
        _ = db
    }

    /// `list-guests` says why a balloon stops short of its target, as the
    /// guest said it (TARGET_UNREACHABLE), with no `query` to the guest; and
    /// stops saying it once the target is reached.
    @Test func listSaysWhyABalloonIsHeld() throws {
        let box = try AgentBox()
        let g = try Sandbox(config: "[Balloon]\nChunkSize=8M\nMaxBalloon=16M\n")
        let dg = try DaemonProcess(arguments: ["--config", g.configPath], waitForSocket: g.socket)
        try box.guest("g", "[Guest]\nChannel=unix:\(g.socket)\nPolicy=manual\nTarget=32M\n")
        let agent = try AgentProcess(["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        #expect(waitUntil(timeout: .seconds(30)) { (try? guest(client, "g"))??.held?.code == .maxBalloon }, "\(agent.log) \(dg.log)")
        let held = try #require(try guest(client, "g"))
        #expect(held.target == 32 * MiB && held.actual == 16 * MiB && balloonLocked(dg.pid) == 16 * MiB)

        try client.value("select-guest", ["name": "g"])
        var events: [Event] = []
        try client.call("set-target", ["target": .uint(8 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(waitUntil { (try? guest(client, "g"))??.actual == 8 * MiB }, "\(agent.log)")
        #expect(try guest(client, "g")?.held == nil)

        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0)
    }

    /// A `Directories=` entry made after the agent started is watched from
    /// then on, without a reload: the watch on its nearest existing parent
    /// sees it made.
    @Test func discoveryDirectoryMadeAfterTheStart() throws {
        let box = try AgentBox()
        let later = box.dir + "/later/sockets"
        let text = "[Host]\nControl=\(box.control)\nGuestDirectory=\(box.guests)\n[Policy]\nMode=manual\n[Discovery]\nLibvirt=no\nDirectories=\(later)\n"
        try text.write(toFile: box.config, atomically: false, encoding: .utf8)
        let agent = try AgentProcess(["--config", box.config])
        #expect(waitUntil { agent.log.contains("\(later) does not exist; watching \(box.dir) for it") }, "\(agent.log)")
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()

        try FileManager.default.createDirectory(atPath: later, withIntermediateDirectories: true)
        let g = try Sandbox(config: "[Channel]\nListen=unix:\(later)/g.sock\n[Balloon]\nChunkSize=8M\n")
        let dg = try DaemonProcess(arguments: ["--config", g.configPath], waitForSocket: "\(later)/g.sock")
        #expect(waitUntil { (try? guest(client, "g"))??.connected == true }, "\(agent.log)")
        #expect(try guest(client, "g")?.source == "discovered")
        #expect(agent.log.contains("discovery: watching \(later)"))

        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0)
        _ = dg
    }

    /// A percentage `HostReserve=` is of the `HostMemory=` budget the policy
    /// works in, at start and after a reload that changes the budget (it was
    /// once of MemTotal: 20% of a 24 GiB machine kept a 2 GiB budget short for ever).
    @Test func reservePercentageIsOfTheBudget() throws {
        let box = try AgentBox()
        func write(budget: String) throws {
            let text = "[Host]\nControl=\(box.control)\nGuestDirectory=\(box.guests)\nHostMemory=\(budget)\n"
                + "[Policy]\nMode=auto\nHostReserve=25%\n[Discovery]\nLibvirt=no\n"
            try text.write(toFile: box.config, atomically: false, encoding: .utf8)
        }
        func status(_ client: RawClient) throws -> PolicyStatusReply {
            try PolicyStatusReply(json: try client.value("policy-status"))
        }
        try write(budget: "1G")
        let agent = try AgentProcess(["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        let first = try status(client)
        #expect(first.budget && first.hostTotal == 1024 * MiB)
        #expect(first.hostReserve == 256 * MiB)

        try write(budget: "2G")
        kill(agent.pid, SIGHUP)
        #expect(waitUntil { (try? status(client))?.hostReserve == 512 * MiB }, "\(agent.log)")
        #expect(try status(client).hostTotal == 2048 * MiB)

        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0)
    }

    /// The control socket is 0600; if its mode is loosened, the agent still
    /// refuses a peer that is neither root nor its own user (SO_PEERCRED) and
    /// names it in the log, while root's clients are served and logged.
    @Test func controlSocketRefusesOtherUsers() throws {
        let box = try AgentBox()
        let agent = try AgentProcess(["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        #expect(try StreamIO.mode(of: box.control) & 0o777 == 0o600)
        let client = try RawClient(socket: box.control)
        try client.sync()
        #expect(waitUntil { agent.log.contains("connected: pid \(getpid()) uid 0") }, "\(agent.log)")

        chmod(box.control, 0o666)
        chmod(box.dir, 0o755)
        // As nobody: connect, send sync, print what comes back before EOF.
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
            try:
                s.sendall(b'{"execute":"sync","id":1}\\n'); data = s.recv(4096)
            except (BrokenPipeError, ConnectionResetError):
                data = b''
            print(repr(data)); print('end' if data == b'' else 'answered')
            """
        let nobody = Process()
        nobody.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        nobody.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, box.control]
        let out = Pipe()
        nobody.standardOutput = out
        try nobody.run()
        nobody.waitUntilExit()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(nobody.terminationStatus == 0, "\(printed)")
        #expect(printed.hasSuffix("end\n"), "\(printed)")
        #expect(waitUntil { agent.log.contains("control client refused: pid \(nobody.processIdentifier) uid 65534") }, "\(agent.log)")
        try client.sync()  // root's client is unaffected

        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0)
    }

    /// `[Host] ControlGroup=`: the socket is 0660 and group-owned, and a
    /// member by primary or supplementary group is served; others are not.
    @Test func controlGroupMembersMayUseTheSocket() throws {
        let box = try AgentBox(extra: "[Host]\nControlGroup=nogroup\n")
        let agent = try AgentProcess(["--config", box.config])
        // The socket is made 0600 and then shared with the group: wait for the share, not just the file.
        var st = stat()
        #expect(waitUntil { stat(box.control, &st) == 0 && st.st_mode & 0o777 == 0o660 }, "\(agent.log)")
        #expect(st.st_mode & 0o777 == 0o660)
        #expect(st.st_gid == 65534)
        chmod(box.dir, 0o755)
        // Then the agent's own check, with the mode loosened so the kernel lets everyone connect.
        chmod(box.control, 0o666)
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
            try:
                s.sendall(b'{"execute":"sync","id":1}\\n'); data = s.recv(4096)
            except (BrokenPipeError, ConnectionResetError):
                data = b''
            print('end' if data == b'' else 'answered')
            """
        func client(_ ids: [String]) throws -> (pid: Int32, printed: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = ids + ["/usr/bin/python3", "-c", script, box.control]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            p.waitUntilExit()
            return (p.processIdentifier, String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        }
        let primary = try client(["--reuid=65534", "--regid=65534", "--clear-groups"])
        #expect(primary.printed == "answered\n")
        let supplementary = try client(["--reuid=65534", "--regid=1", "--groups=65534"])
        #expect(supplementary.printed == "answered\n")
        let outsider = try client(["--reuid=65534", "--regid=1", "--clear-groups"])
        #expect(outsider.printed == "end\n")
        #expect(waitUntil { agent.log.contains("control client refused: pid \(outsider.pid) uid 65534 gid 1 is neither root nor uid 0 nor in group 65534") },
                "\(agent.log)")
        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0)

        let unknown = try AgentBox(extra: "[Host]\nControlGroup=no-such-group-here\n")
        let refused = try AgentProcess(["--config", unknown.config])
        #expect(refused.waitForExit() == 1)
        #expect(refused.log.contains("\(unknown.config): [Host] ControlGroup: no group \"no-such-group-here\""), "\(refused.log)")
    }

    @Test func badFileNamesFileLineAndKey() throws {
        let box = try AgentBox(extra: "[Policy]\nMode=fast\n")
        let agent = try AgentProcess(["--config", box.config])
        #expect(agent.waitForExit() == 1)
        #expect(agent.log.contains("\(box.config):10: [Policy] Mode: \"fast\" is not one of auto, proxmox, mom, manual"), "\(agent.log)")

        let ok = try AgentBox()
        try ok.guest("vm1", "[Guest]\nMin=1G\n")
        let missing = try AgentProcess(["--config", ok.config, "--dump-config"])
        #expect(missing.waitForExit() == 1)
        #expect(missing.log.contains("\(ok.guests)/vm1.conf: [Guest] Channel: required"), "\(missing.log)")
    }
}

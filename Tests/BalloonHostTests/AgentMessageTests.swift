// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import Testing

/// balloon-hostd's control commands and replies: typed, checked like v1's,
/// and their JSON forms read back.
@Suite struct AgentMessages {
    @Test func commandsRoundTripAndAreChecked() throws {
        let commands: [AgentCommand] = [
            .selectGuest(name: "vm1"), .listGuests, .guestStatus(name: "vm1"), .policyStatus,
            .setGuestPolicy(name: "vm1", policy: .manual),
        ]
        for command in commands {
            let request = command.request(id: .int(1))
            #expect(AgentCommand.names(request))
            #expect(try AgentCommand(request) == command)
        }
        #expect(!AgentCommand.names(Request("query")))
        #expect(throws: ProtocolError.self) { try AgentCommand(Request("select-guest")) }
        #expect(throws: ProtocolError.self) { try AgentCommand(Request("list-guests", arguments: ["all": true])) }
        do {
            _ = try AgentCommand(Request("set-guest-policy", arguments: ["name": "a", "policy": "sometimes"]))
            Issue.record("accepted a bad policy")
        } catch {
            #expect(error.errorClass == .invalidParameter && error.desc.contains("auto, manual, off"))
        }
    }

    @Test func repliesRoundTrip() throws {
        var g = GuestSummary(name: "vm1", channel: "unix:/run/vm1.sock", source: "config", connected: true, policy: .auto)
        g.ramSize = 1 << 30
        g.target = 256 << 20
        g.psiSomeAvg10 = 1.5
        g.bytesFreed = 4096
        g.reason = "spare memory"
        g.held = StopReason(code: .pressure, desc: "held until the guest has been quiet")
        let list = GuestListReply(guests: [g, GuestSummary(name: "vm2", channel: "vsock:3:7468", source: "discovered", connected: false, policy: .off)])
        #expect(try GuestListReply(json: list.json) == list)
        var session = ServeStatus()
        session.guestConnected = true
        session.desiredTarget = 256 << 20
        let status = GuestStatusReply(guest: g, session: session)
        #expect(try GuestStatusReply(json: status.json) == status)
        let policy = PolicyStatusReply(mode: "auto", interval: .seconds(1), hostTotal: 8 << 30, hostAvailable: 3 << 30, hostReserve: 512 << 20, budget: true, rounds: 7, targetsSet: 2)
        #expect(try PolicyStatusReply(json: policy.json) == policy)
        #expect(HostFormat.guestList(list).contains("vm1"))
        #expect(HostFormat.guestList(list).contains("pressure"))
        #expect(HostFormat.guestStatus(status).contains("pressure: held until"))
        #expect(list.guests[1].json["held"] == .null)
        #expect(HostFormat.guestList(GuestListReply(guests: [])) == "no guests\n")
    }
}

/// A guest's RAM file state (issue 13): on the wire with `serve-status` and
/// `guest-status`, and in balloonctl's text.
@Suite struct BackendStateMessages {
    @Test func roundTripsAndIsShown() throws {
        var session = ServeStatus()
        session.memoryBackend = "/dev/shm/vm1"
        session.memoryBackendState = BackendState(.readOnly, lastPunchError: "fallocate(PUNCH_HOLE) /dev/shm/vm1 offset 0 length 4096: Operation not permitted", lastPunchErrno: 1)
        #expect(try ServeStatus(json: session.json) == session)
        #expect(session.json["memory-backend-state"]?["state"] == .string("read-only"))
        #expect(session.json["memory-backend-state"]?["errno"] == .int(1))
        #expect(HostFormat.serveStatus(session).contains(
            "backend state    read-only (last punch: fallocate(PUNCH_HOLE) /dev/shm/vm1 offset 0 length 4096: Operation not permitted (errno 1))\n"))
        session.memoryBackendState = BackendState(.missing)
        #expect(HostFormat.serveStatus(session).contains("backend state    missing (the path no longer names the file held open)\n"))
        // No backend: null, and a serve from before the field reads as none.
        session.memoryBackendState = nil
        #expect(session.json["memory-backend-state"] == .null)
        #expect(try ServeStatus(json: session.json).memoryBackendState == nil)
        #expect(HostFormat.serveStatus(session).contains("backend state    -\n"))
        let unknown = JSON.object(try #require(session.json.object).map { $0.0 == "memory-backend-state" ? ($0.0, ["state": "gone"]) : $0 })
        #expect(throws: ProtocolError.self) { try ServeStatus(json: unknown) }
    }
}

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
        #expect(HostFormat.guestList(GuestListReply(guests: [])) == "no guests\n")
    }
}

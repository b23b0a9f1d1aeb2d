// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import BalloonHost
import BalloonProtocol

/// balloon-hostd's defaults as balloonctl needs them.
enum AgentDefaults {
    static let control = "/run/balloon-hostd/control"
}

/// The options of the commands that talk to balloon-hostd itself.
struct AgentOptions: ParsableArguments {
    @Option(name: .customLong("agent"), help: ArgumentHelp("balloon-hostd's control socket.", valueName: "path"))
    var agent: String = AgentDefaults.control

    @Option(help: ArgumentHelp("Seconds to wait for the agent to answer.", valueName: "seconds"))
    var timeout: Double = 5

    @Flag(help: "Machine-readable output: the reply JSON as one line.")
    var json = false

    func validate() throws {
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
    }

    func open() throws(HostError) -> GuestSession {
        try GuestSession.open(.unix(path: agent), timeout: .secondsValue(timeout))
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List balloon-hostd's guests: target, actual, available, PSI, host memory freed.")
    @OptionGroup var options: AgentOptions

    func run() throws {
        let raw = try options.open().call(AgentCommand.listGuests)
        Console.out(options.json ? raw.serialized() + "\n" : HostFormat.guestList(try GuestSession.decode(raw, as: GuestListReply.self, for: .listGuests)))
    }
}

struct GuestStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: AgentCommand.Name.guestStatus.rawValue,
        abstract: "Show one balloon-hostd guest: its row of `list` and its session's counters.")
    @OptionGroup var options: AgentOptions

    @Argument(help: ArgumentHelp("The guest's name.", valueName: "name"))
    var name: String

    func run() throws {
        let raw = try options.open().call(AgentCommand.guestStatus(name: name))
        Console.out(options.json ? raw.serialized() + "\n" : HostFormat.guestStatus(try GuestSession.decode(raw, as: GuestStatusReply.self, for: .guestStatus)))
    }
}

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Show balloon-hostd's policy and host memory, or set one guest's policy (auto, manual, off) until the next reload.")
    @OptionGroup var options: AgentOptions

    @Option(help: ArgumentHelp("The guest whose policy to set.", valueName: "name"))
    var guest: String?

    @Argument(help: ArgumentHelp("auto, manual or off (with --guest).", valueName: "policy"))
    var policy: String?

    func validate() throws {
        guard (guest == nil) == (policy == nil) else { throw ValidationError("give both --guest NAME and the policy (auto, manual or off), or neither") }
        if let policy, AgentCommand.GuestPolicyName(rawValue: policy) == nil {
            throw ValidationError("\"\(policy)\" is not a guest policy (auto, manual or off)")
        }
    }

    func run() throws {
        let session = try options.open()
        if let guest, let policy, let name = AgentCommand.GuestPolicyName(rawValue: policy) {
            let raw = try session.call(AgentCommand.setGuestPolicy(name: guest, policy: name))
            Console.out(options.json ? raw.serialized() + "\n" : "\(guest): policy \(policy)\n")
            return
        }
        let raw = try session.call(AgentCommand.policyStatus)
        Console.out(options.json ? raw.serialized() + "\n" : HostFormat.policyStatus(try GuestSession.decode(raw, as: PolicyStatusReply.self, for: .policyStatus)))
    }
}

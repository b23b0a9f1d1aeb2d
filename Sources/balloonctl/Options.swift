// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import BalloonHost
import BalloonProtocol

/// Where the guest's channel is: shared by every subcommand and by `serve`.
struct GuestTransportOptions: ParsableArguments {
    @Option(name: .customLong("unix"), help: ArgumentHelp("Unix socket of the guest channel (QEMU -chardev socket path).", valueName: "path"))
    var unix: String?

    @Option(name: .customLong("vsock"), help: ArgumentHelp("vsock address of balloond in the guest.", valueName: "cid:port"))
    var vsock: String?

    @Option(
        name: .customLong("hybrid-vsock"),
        help: ArgumentHelp("Firecracker / Cloud Hypervisor vsock unix socket and guest port.", valueName: "path:port"))
    var hybridVsock: String?

    /// How many of the three were given.
    var given: Int { [unix, vsock, hybridVsock].compactMap { $0 }.count }

    /// The guest's address, or nil if none of the three was given.
    func guestAddress() throws(HostError) -> GuestAddress? {
        if let unix { return .unix(path: unix) }
        if let vsock { return try GuestAddress.parseVsock(vsock) }
        if let hybridVsock { return try GuestAddress.parseHybridVsock(hybridVsock) }
        return nil
    }
}

/// The options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @OptionGroup var transport: GuestTransportOptions

    @Option(
        name: .customLong("control"),
        help: ArgumentHelp("The control socket of a running `balloonctl serve` (instead of the guest).", valueName: "path"))
    var control: String?

    @Option(
        name: .customLong("agent"),
        help: ArgumentHelp("balloon-hostd's control socket (default \(AgentDefaults.control) with --guest).", valueName: "path"))
    var agent: String?

    @Option(help: ArgumentHelp("The balloon-hostd guest to talk to (balloonctl list shows them).", valueName: "name"))
    var guest: String?

    @Option(help: ArgumentHelp("Seconds to wait for the guest to answer.", valueName: "seconds"))
    var timeout: Double = 5

    @Flag(help: "Machine-readable output: the reply JSON as one line.")
    var json = false

    func validate() throws {
        let given = transport.given + (control == nil ? 0 : 1) + (agent == nil && guest == nil ? 0 : 1)
        guard given == 1 else {
            throw ValidationError(
                given == 0
                    ? "say where the guest is: one of --unix PATH, --vsock CID:PORT, --hybrid-vsock PATH:PORT, --control PATH, --guest NAME"
                    : "give only one of --unix, --vsock, --hybrid-vsock, --control, --guest (with --agent)")
        }
        if agent != nil, guest == nil { throw ValidationError("--agent needs --guest NAME (balloonctl list shows the guests)") }
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
    }

    func address() throws(HostError) -> GuestAddress {
        if let guest = try transport.guestAddress() { return guest }
        // serve's control socket speaks the same protocol.
        if let control { return .unix(path: control) }
        // balloon-hostd's too, once a guest is selected.
        if guest != nil { return .unix(path: agent ?? AgentDefaults.control) }
        throw .usage("no guest address given")
    }

    /// Connects and syncs (and with --guest, selects the guest).
    func open() throws(HostError) -> GuestSession {
        let session = try GuestSession.open(try address(), timeout: .secondsValue(timeout))
        if let guest { _ = try session.call(AgentCommand.selectGuest(name: guest)) }
        return session
    }
}


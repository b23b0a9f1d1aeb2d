// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import BalloonHost
import BalloonProtocol
import BalloonSystem

/// `balloonctl serve`: owns the guest session, takes later commands through a
/// control socket, and frees the frames the balloon holds in the guest's RAM
/// backend file. The loop itself is `BalloonHost.ServeLoop`.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep a session with the guest, serve other balloonctl calls on a control socket, free reported frames.",
        discussion: """
            Connects to the guest (--unix, --vsock or --hybrid-vsock), reconnects with backoff when the \
            connection ends, and re-applies the desired target (--target, or the last `set` through the \
            control socket). Other calls use `balloonctl --control PATH <subcommand>`. With \
            --memory-backend FILE it enables frame reporting and punches the reported frames out of the \
            guest's RAM file (fallocate PUNCH_HOLE), after checking each range against the RAM map, \
            what is already held, and the rate limit. Stops on SIGINT or SIGTERM.
            """)

    @OptionGroup var transport: GuestTransportOptions

    @Option(name: .customLong("control"), help: ArgumentHelp("The control socket to create (mode 0600).", valueName: "path"))
    var control: String

    @Option(help: ArgumentHelp("Keep the balloon at this size (re-applied after every reconnect).", valueName: "size"))
    var target: String?

    @Option(help: ArgumentHelp("The guest's RAM backend file (memory-backend-file mem-path, share=on).", valueName: "file"))
    var memoryBackend: String?

    @Option(help: ArgumentHelp("Guest RAM size (default: the backend file's size).", valueName: "size"))
    var ramSize: String?

    @Option(help: ArgumentHelp("Guest-physical to file map: linear (default), pc, q35, or GPA:SIZE@OFFSET[,…].", valueName: "map"))
    var ramMap: String?

    @Option(help: ArgumentHelp("Most bytes freed per second (default: the guest RAM size per second).", valueName: "bytes"))
    var punchRate: String?

    @Flag(help: "Switch the guest's free-memory mode on in every session: the balloon holds the guest's free memory and its frames are freed (needs --memory-backend).")
    var freeMemoryReporting = false

    @Flag(inversion: .prefixedNo, help: "Allocate the memory backend again for memory the guest takes back (a FRAMES_DEFLATED), before the guest touches it, so QEMU's vCPU does not fault it in page by page (default: on).")
    var populateOnDeflate: Bool?

    @Flag(inversion: .prefixedNo, help: "With --populate-on-deflate, also map that memory into the process that maps the memory backend (QEMU, found in /proc/*/maps) by reading a byte a page with process_vm_readv, so the guest's first touch takes no fault in QEMU either; needs ptrace access to QEMU (default: on).")
    var prefault: Bool?

    @Option(help: ArgumentHelp("Also speak QEMU's QMP balloon dialect on this unix socket (mode 0600; docs/qmp.md).", valueName: "path"))
    var qmp: String?

    @Option(help: ArgumentHelp("Seconds the guest may take to answer sync and each request.", valueName: "seconds"))
    var timeout: Double = 10

    @Flag(help: "Accepted for symmetry with the other subcommands; serve logs plain lines on stderr.")
    var json = false

    func validate() throws {
        let given = transport.given
        guard given == 1 else {
            throw ValidationError(
                given == 0
                    ? "say where the guest is: one of --unix PATH, --vsock CID:PORT, --hybrid-vsock PATH:PORT"
                    : "give only one of --unix, --vsock, --hybrid-vsock")
        }
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
        if memoryBackend == nil, ramSize != nil || ramMap != nil || punchRate != nil || freeMemoryReporting || populateOnDeflate == true || prefault == true {
            throw ValidationError("--ram-size, --ram-map, --punch-rate, --free-memory-reporting, --populate-on-deflate and --prefault need --memory-backend")
        }
        if populateOnDeflate == false, prefault == true {
            throw ValidationError("--prefault maps what --populate-on-deflate allocates: it cannot go with --no-populate-on-deflate")
        }
    }

    func guestAddress() throws(HostError) -> GuestAddress {
        guard let guest = try transport.guestAddress() else { throw .usage("no guest address given") }
        return guest
    }

    func run() throws {
        var options = ServeOptions(guest: try guestAddress(), controlPath: control)
        if let target { options.desiredTarget = try HostSize.parse(target) }
        options.guestTimeout = .secondsValue(timeout)
        options.connectTimeout = .secondsValue(min(timeout, 2))
        options.handleSignals = true
        options.freeMemoryReporting = freeMemoryReporting
        if let populateOnDeflate { options.populateOnDeflate = populateOnDeflate }  // else ServeOptions' default
        if let prefault { options.prefault = prefault }
        options.qmpPath = qmp
        // QMP's guest RAM (the guest's MemTotal) and guest-stats come from STATS.
        if qmp != nil { options.statsInterval = .seconds(1) }
        options.log = { HostIO.write("balloonctl serve: " + $0 + "\n", to: .error) }

        var frames: (ledger: FrameLedger, puncher: BackendPuncher)?
        if let memoryBackend {
            var size: UInt64?
            if let ramSize { size = try HostSize.parse(ramSize) }
            let puncher = try BackendPuncher(path: memoryBackend, ramSize: size)
            let map = try RamMap.parse(ramMap ?? "linear", ramSize: puncher.ramSize)
            var rate = FrameLedger.defaultPunchRate(for: map)
            if let punchRate { rate = try HostSize.parse(punchRate) }
            guard rate > 0 else { throw HostError.usage("--punch-rate must be more than 0") }
            options.log("RAM map: \(map); punch rate \(HumanBytes.format(rate))/s")
            frames = (FrameLedger(map: map, punchRate: rate, now: SystemClock.monotonic()), puncher)
        }
        let loop = try ServeLoop(options: options, frames: frames)
        try loop.run()
    }
}

struct ServeStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: Command.Name.serveStatus.rawValue,
        abstract: "Show a running `balloonctl serve`'s counters (use with --control PATH).",
        aliases: ["status"])
    @OptionGroup var options: GlobalOptions

    func run() throws {
        let session = try options.open()
        let value = try session.call(.serveStatus)
        Console.out(options.json ? value.serialized() + "\n" : HostFormat.serveStatus(try ServeStatus(json: value)))
    }
}

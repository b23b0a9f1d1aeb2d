// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import BalloonHost
import BalloonProtocol
import BalloonSystem

struct Balloonctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balloonctl",
        abstract: "Control and watch a guest's balloond memory balloon.",
        discussion: """
            Connect with exactly one of --unix PATH (QEMU -chardev socket, or balloond's own unix \
            socket), --vsock CID:PORT, or --hybrid-vsock PATH:PORT (Firecracker, Cloud Hypervisor), \
            or --control PATH (the control socket of a running `balloonctl serve`), or --guest NAME \
            (a guest of balloon-hostd; --agent PATH names its control socket). \
            Exit codes: 0 ok, 1 usage, connection or protocol error, 2 target unreachable.
            """,
        version: BalloondVersion.current,
        subcommands: [
            Info.self, SetTarget.self, Query.self, Stats.self, Watch.self, Events.self, Serve.self, ServeStatusCommand.self,
            List.self, GuestStatusCommand.self, PolicyCommand.self, Top.self,
        ]
    )

    /// Runs the command and exits: 0 ok, 1 usage/connection/protocol error
    /// (message on stderr prefixed `balloonctl: `), 2 target unreachable.
    static func runAndExit() -> Never {
        do {
            var command = try parseAsRoot(placeGlobalOptions(Array(CommandLine.arguments.dropFirst())))
            try command.run()
            exit(withError: nil)
        } catch let error as HostError {
            Console.error(error.description)
            exit(withError: ExitCode(1))
        } catch let error as Unreachable {
            Console.error(error.description)
            exit(withError: ExitCode(2))
        } catch let error as ExitCode {
            exit(withError: error)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }  // --help
            var text = fullMessage(for: error)
            if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
            Console.error(text)
            exit(withError: ExitCode(1))
        }
    }
}

/// Options that may also be written before the subcommand
/// (`balloonctl --unix PATH set 1G`): argument-parser reads them only after
/// it, so they are moved there. The value says whether the option takes one.
let globalOptionArity: [String: Bool] = [
    "--unix": true, "--vsock": true, "--hybrid-vsock": true, "--control": true, "--timeout": true, "--json": false,
    "--agent": true, "--guest": true,
]

func placeGlobalOptions(_ arguments: [String]) -> [String] {
    var leading: [String] = []
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
        guard let takesValue = globalOptionArity[name] else { break }
        leading.append(argument)
        if takesValue, !argument.contains("="), index + 1 < arguments.count {
            leading.append(arguments[index + 1])
            index += 1
        }
        index += 1
    }
    guard !leading.isEmpty, index < arguments.count else { return arguments }
    // The subcommand name, then the hoisted options, then the rest.
    return [arguments[index]] + leading + arguments[(index + 1)...]
}

/// The target cannot be reached (exit code 2).
struct Unreachable: Error, CustomStringConvertible {
    var target: UInt64
    var actual: UInt64
    var reason: StopReason?
    var description: String {
        "target \(HumanBytes.format(target)) is unreachable: \(reason?.description ?? "no reason given")"
            + " (actual \(HumanBytes.format(actual)))"
    }
}

enum Console {
    static let isTerminal = HostIO.isTerminal(.output)
    static func out(_ text: String) { HostIO.write(text, to: .output) }
    static func line(_ text: String) { HostIO.write(text + "\n", to: .output) }
    static func error(_ text: String) { HostIO.write("balloonctl: " + text + "\n", to: .error) }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the daemon's version, protocol, page size, memory, limits and channel.")
    @OptionGroup var options: GlobalOptions

    func run() throws {
        let session = try options.open()
        let raw = try session.call(.info)
        Console.out(options.json ? raw.serialized() + "\n" : HostFormat.info(try GuestSession.decode(raw, as: InfoReply.self, for: .info)))
    }
}

struct SetTarget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Set the balloon's target size (how much memory the guest gives back).",
        discussion: "SIZE: bytes, or with a unit in powers of 1024: 512M, 2G, 1.5GiB, 0 (deflate fully).")
    @OptionGroup var options: GlobalOptions

    @Argument(help: ArgumentHelp("The target balloon size, e.g. 512M, 1.5G, 0.", valueName: "size"))
    var size: String

    @Flag(help: "Wait until the balloon reaches the target (exit 2 if it cannot).")
    var wait = false

    @Option(help: ArgumentHelp("With --wait: give up after this many seconds.", valueName: "seconds"))
    var waitTimeout: Double = 300

    func validate() throws {
        guard waitTimeout > 0, waitTimeout.isFinite else { throw ValidationError("--wait-timeout must be a positive number of seconds") }
    }

    func run() throws {
        let bytes = try HostSize.parse(size)
        let session = try options.open()
        let raw = try session.call(.setTarget(bytes))
        let reply = try GuestSession.decode(raw, as: SetTargetReply.self, for: .setTarget)
        // A reply precedes the events its movement causes: earlier ones are not ours.
        session.discardQueuedEvents()
        if options.json {
            Console.line(raw.serialized())
        } else {
            var text = "target \(HumanBytes.format(reply.target))"
            if reply.effectiveTarget != reply.target {
                text += " (clamped to max-balloon: effective target \(HumanBytes.format(reply.effectiveTarget)))"
            }
            Console.line(text + ", actual \(HumanBytes.format(reply.actual))")
        }
        guard wait else { return }

        if reply.isDone {
            if !options.json { Console.line(HostFormat.progress(actual: reply.actual, target: reply.target) + ": target reached") }
            return
        }
        if reply.isStoppedShort {
            let (status, raw) = try query(session)
            if options.json { Console.line(raw.serialized()) }
            throw Unreachable(
                target: reply.target, actual: status.actual,
                reason: status.reason ?? StopReason(code: .maxBalloon, desc: "the target exceeds max-balloon"))
        }

        let deadline = Deadline(after: .secondsValue(waitTimeout))
        var progress = Progress(json: options.json)
        while true {
            guard let event = try session.nextEvent(timeout: deadline.remaining) else {
                progress.finish()
                return try afterTimeout(session, reply: reply)
            }
            if options.json { Console.line(event.json.serialized()) }
            switch try? GuestEvent(event) {
            case let .balloonChange(p)?:
                progress.show(actual: p.actual, target: p.target)
            case let .targetReached(p)? where p.target == reply.target || p.target == reply.effectiveTarget:
                progress.show(actual: p.actual, target: p.target)
                progress.finish()
                if !options.json { Console.line("target reached") }
                return
            case let .targetUnreachable(p, reason)?:
                progress.finish()
                throw Unreachable(target: reply.target, actual: p.actual, reason: reason)
            default:
                continue
            }
        }
    }

    /// No verdict within --wait-timeout: ask where the balloon is.
    private func afterTimeout(_ session: GuestSession, reply: SetTargetReply) throws {
        let (status, raw) = try query(session)
        if options.json { Console.line(raw.serialized()) }
        if status.actual == status.target && status.effectiveTarget == status.target {
            if !options.json { Console.line(HostFormat.progress(actual: status.actual, target: status.target) + ": target reached") }
            return
        }
        if status.state == .unreachable || status.reason != nil {
            throw Unreachable(target: status.target, actual: status.actual, reason: status.reason)
        }
        throw HostError.usage(
            "timed out after \(HostFormat.seconds(waitTimeout)) waiting for the target: "
                + HostFormat.progress(actual: status.actual, target: status.target) + " (state \(status.state.rawValue))")
    }

    /// `query`, typed and as received (for --json).
    private func query(_ session: GuestSession) throws(HostError) -> (QueryReply, JSON) {
        let raw = try session.call(.query)
        return (try GuestSession.decode(raw, as: QueryReply.self, for: .query), raw)
    }
}

/// The `set --wait` progress line: refreshed in place on a terminal, one line
/// per BALLOON_CHANGE otherwise.
struct Progress {
    var json: Bool
    var open = false

    mutating func show(actual: UInt64, target: UInt64) {
        guard !json else { return }
        let text = HostFormat.progress(actual: actual, target: target)
        if Console.isTerminal {
            Console.out("\r\u{1B}[K" + text)
            open = true
        } else {
            Console.line(text)
        }
    }

    mutating func finish() {
        if open { Console.out("\n") }
        open = false
    }
}

struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the balloon's target, effective target, actual size, state and reason.")
    @OptionGroup var options: GlobalOptions

    func run() throws {
        let session = try options.open()
        let raw = try session.call(.query)
        Console.out(options.json ? raw.serialized() + "\n" : FreeMemoryFormat.status(try GuestSession.decode(raw, as: QueryReply.self, for: .query)))
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the guest's virtio balloon statistics, memory pressure (PSI) and the balloon.")
    @OptionGroup var options: GlobalOptions

    func run() throws {
        let session = try options.open()
        let raw = try session.call(.stats)
        Console.out(options.json ? raw.serialized() + "\n" : FreeMemoryFormat.stats(try GuestSession.decode(raw, as: StatsReply.self, for: .stats)))
    }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of the balloon and the guest's memory, refreshed every interval (Ctrl-C stops).")
    @OptionGroup var options: GlobalOptions

    @Option(help: ArgumentHelp("Seconds between refreshes.", valueName: "seconds"))
    var interval: Double = 2

    @Option(help: ArgumentHelp("Stop after this many refreshes.", valueName: "n"))
    var count: Int?

    func validate() throws {
        guard interval > 0, interval.isFinite else { throw ValidationError("--interval must be a positive number of seconds") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        // Before anything else: SIGINT/SIGTERM become a descriptor to wait on.
        let interrupt = try InterruptWatcher()
        let session = try options.open()
        var refreshes = 0
        while true {
            let rawStats = try session.call(.stats)
            let rawQuery = try session.call(.query)
            let stats = try GuestSession.decode(rawStats, as: StatsReply.self, for: .stats)
            let status = try GuestSession.decode(rawQuery, as: QueryReply.self, for: .query)
            if options.json {
                Console.line(JSON.object([(Command.Name.query.rawValue, rawQuery), (Command.Name.stats.rawValue, rawStats)]).serialized())
            } else if Console.isTerminal {
                Console.out("\u{1B}[H\u{1B}[2J" + HostFormat.watchBlock(status: status, stats: stats))
            } else {
                Console.line(HostFormat.watchLine(status: status, stats: stats))
            }
            refreshes += 1
            if let count, refreshes >= count { return }
            if try interrupt.wait(timeout: .milliseconds(Int64((interval * 1000).rounded()))) { return }
        }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print events as they arrive, one per line.")
    @OptionGroup var options: GlobalOptions

    @Option(help: ArgumentHelp("Stop after this many events.", valueName: "n"))
    var count: Int?

    @Option(help: ArgumentHelp("First ask the guest for STATS events every this many milliseconds (0 stops them).", valueName: "ms"))
    var statsInterval: UInt64?

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let statsInterval, statsInterval != 0 && statsInterval < 100 {
            throw ValidationError("--stats-interval must be 0 or at least 100 (milliseconds)")
        }
    }

    func run() throws {
        let session = try options.open()
        if let statsInterval { try session.setStatsInterval(.milliseconds(statsInterval)) }
        var seen = 0
        while count.map({ seen < $0 }) ?? true {
            guard let event = try session.nextEvent(timeout: nil) else { continue }
            Console.line(options.json ? event.json.serialized() : HostFormat.event(event))
            seen += 1
        }
    }
}

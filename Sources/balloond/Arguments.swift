// SPDX-License-Identifier: Apache-2.0
import BalloonDaemon

// balloond's command line, parsed by hand: three options do not need
// swift-argument-parser, which links FoundationEssentials into the daemon
// and costs about 1 MiB of resident memory for as long as it runs
// (docs/operations.md "Memory of the daemon itself").

/// What the command line asked for.
struct Arguments: Equatable {
    enum Action: Equatable { case run, help, version }
    var action: Action = .run
    var config: String?
    var channel: String?
    var dumpConfig = false

    static let usage = """
        OVERVIEW: Userspace memory balloon for Linux guests.

        Listens on a virtio-serial port, vsock or unix socket for the host's balloon
        target, holds memory in mlocked chunks, and answers with memory statistics.
        See balloond(8) and balloond.conf(5).

        USAGE: balloond [--config <PATH>] [--channel <CHANNEL>] [--dump-config]

        OPTIONS:
          --config <PATH>         Configuration file; drop-ins are read from PATH.d/*.conf.
          --channel <CHANNEL>     Overrides Listen=: unix:PATH, virtio-serial:NAME_OR_PATH or vsock:PORT.
          --dump-config           Print the effective configuration and exit.
          --version               Show the version.
          -h, --help              Show help information.

        """

    /// A usage error: names the argument; the caller prints it with a hint.
    struct UsageError: Error, Equatable, CustomStringConvertible {
        var description: String
    }

    /// Parses the arguments after the program name. `--opt=value` and
    /// `--opt value` both work; a repeated option keeps the last value.
    static func parse(_ arguments: [String]) throws(UsageError) -> Arguments {
        var result = Arguments()
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            var name = argument
            var inline: String?
            if argument.hasPrefix("--"), let eq = argument.firstIndex(of: "=") {
                name = String(argument[..<eq])
                inline = String(argument[argument.index(after: eq)...])
            }
            func value() throws(UsageError) -> String {
                if let inline { return inline }
                guard let next = rest.popFirst(), !next.hasPrefix("-") || next == "-" else {
                    throw UsageError(description: "Missing value for '\(name) <\(name == "--config" ? "PATH" : "CHANNEL")>'")
                }
                return next
            }
            switch name {
            case "--config": result.config = try value()
            case "--channel": result.channel = try value()
            case "--dump-config", "--version", "--help", "-h":
                if inline != nil { throw UsageError(description: "'\(name)' takes no value") }
                switch name {
                case "--dump-config": result.dumpConfig = true
                case "--version": result.action = .version
                default: result.action = .help
                }
            default:
                throw UsageError(
                    description: argument.hasPrefix("-") ? "Unknown option '\(name)'" : "Unexpected argument '\(argument)'")
            }
            // --help and --version win over everything after them, as usual.
            if result.action != .run { return result }
        }
        return result
    }
}

// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import BalloonConfig
import BalloonHost
import BalloonProtocol
import BalloonService
import BalloonSystem
import Logging

/// balloon-hostd: one host agent for every guest (docs/hostd.md).
struct BalloonHostd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balloon-hostd",
        abstract: "Balloon every guest of this host: sessions, frame freeing and an automatic policy.",
        discussion: """
            Reads /etc/balloon-hostd.conf and one /etc/balloon-hostd.d/NAME.conf per guest, discovers \
            guests from watched socket directories, and serves balloonctl on its control socket \
            (balloonctl list; balloonctl --guest NAME set|query|stats|events). SIGHUP reloads; \
            SIGINT/SIGTERM stop. Log lines go to stderr.
            """,
        version: BalloondVersion.current)

    @Option(help: ArgumentHelp("The configuration file (default /etc/balloon-hostd.conf; given, it must exist).", valueName: "path"))
    var config: String?

    @Flag(help: "Print the configuration in effect (every key, every guest) and exit.")
    var dumpConfig = false

    func run() throws {
        let path = config ?? HostdConfig.defaultPath
        if dumpConfig {
            do {
                HostIO.write(HostdLoader.render(try HostdLoader.load(path: path, required: config != nil)), to: .output)
            } catch {
                HostIO.write("balloon-hostd: \(error)\n", to: .error)
                throw ExitCode(1)
            }
            return
        }
        do {
            // sd_notify under systemd (Type=notify, WatchdogSec=); a no-op otherwise.
            let notifier = SystemdNotifier(logger: Logger(label: "balloon-hostd") { _ in LineLogHandler() })
            let agent = try HostAgent(configPath: path, required: config != nil, notifier: notifier) {
                HostIO.write("balloon-hostd: " + $0 + "\n", to: .error)
            }
            try agent.run()
        } catch {
            HostIO.write("balloon-hostd: \(error)\n", to: .error)
            throw ExitCode(1)
        }
    }
}

/// The notifier's reports as the agent's other lines: `balloon-hostd: …` on stderr.
struct LineLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let fields = event.metadata.map { " (" + $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + ")" } ?? ""
        HostIO.write("balloon-hostd: \(event.message)\(fields)\n", to: .error)
    }
}

BalloonHostd.main()

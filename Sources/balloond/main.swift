// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonDaemon
import BalloonService
import BalloonSystem
import BalloonSystemd
import Glibc
import Logging

/// The guest daemon's command line; the work lives in BalloonDaemon.
struct Balloond {
    var config: String?
    var channel: String?
    var dumpConfig: Bool

    static func main() {
        let arguments: Arguments
        do { arguments = try Arguments.parse(Array(CommandLine.arguments.dropFirst())) } catch {
            ProcessControl.writeToStandardError(Array("Error: \(error)\nUsage: balloond [--config <PATH>] [--channel <CHANNEL>] [--dump-config]\n  See 'balloond --help' for more information.\n".utf8))
            Glibc.exit(exitUsage)
        }
        switch arguments.action {
        case .help: print(Arguments.usage, terminator: "")
        case .version: print(balloondVersion)
        case .run: Balloond(config: arguments.config, channel: arguments.channel, dumpConfig: arguments.dumpConfig).run()
        }
    }

    func run() {
        let path = config ?? "/etc/balloond.conf"
        // Under systemd, stderr is the journal: log structured entries with
        // sd_journal_send instead (never both).
        let journal = JournalStream.standardErrorIsJournal()
        let loaded: LoadedConfig
        let override: ChannelSpec?
        do {
            loaded = try ConfigLoader.load(path: path, required: config != nil)
            override = try channel.map { (text) throws(ConfigError) in try ChannelSpec.parse(text) }
        } catch {
            if journal, !dumpConfig {
                var metadata: Logger.Metadata = [:]
                if !error.file.isEmpty { metadata["config-file"] = "\(error.file)" }
                if let line = error.line { metadata["config-line"] = "\(line)" }
                if let section = error.section { metadata["config-section"] = "\(section)" }
                if let key = error.key { metadata["config-key"] = "\(key)" }
                Logger(label: "balloond") { JournalLogHandler(label: $0) }
                    .error("invalid configuration: \(error)", metadata: metadata)
                Glibc.exit(exitConfigError)
            }
            fail("\(error)", status: exitConfigError)
        }
        if dumpConfig {
            var effective = loaded.config
            if let override { effective.listen = override }
            print(effective.render(sources: loaded.sources), terminator: "")
            return
        }
        LoggingSystem.bootstrap { label in
            if journal {
                var handler = JournalLogHandler(label: label)
                handler.logLevel = .trace
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .trace
            return handler
        }
        var logger = Logger(label: "balloond")
        logger.logLevel = Logger.Level(loaded.config.logLevel)
        let testFaults = ProcessControl.environment("BALLOOND_TEST_FAULTS") == "1"
        var options = DaemonOptions(
            configPath: path, configRequired: config != nil, channelOverride: override, testFaults: testFaults)
        // Tests only: frame reporting's grace time, so a test need not wait 5 s.
        if let ms = ProcessControl.environment("BALLOOND_TEST_FRAME_GRACE_MS").flatMap(UInt64.init) {
            options.frameReleaseGrace = .milliseconds(Int64(clamping: ms))
        }
        // sd_notify when run by systemd (NOTIFY_SOCKET); a no-op otherwise.
        let notifier = SystemdNotifier(logger: logger)
        do {
            let daemon = try Daemon(options: options, loaded: loaded, logger: logger, notifier: notifier)
            try daemon.run()
        } catch {
            logger.critical("\(error)")
            if journal { Glibc.exit(1) }
            fail("\(error)")
        }
    }

    private func fail(_ message: String, status: Int32 = 1) -> Never {
        ProcessControl.writeToStandardError(Array("balloond: \(message)\n".utf8))
        Glibc.exit(status)
    }
}

/// A configuration that cannot be used (sysexits' EX_CONFIG): the unit does
/// not restart on it, unlike a failure that may pass (a channel not there yet).
let exitConfigError: Int32 = 78
/// A command line that cannot be parsed (sysexits' EX_USAGE, as before).
let exitUsage: Int32 = 64

Balloond.main()

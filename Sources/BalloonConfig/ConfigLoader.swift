// SPDX-License-Identifier: Apache-2.0
import BalloonSystem

/// A configuration and the files it was built from, in the order applied.
public struct LoadedConfig: Sendable {
    package var config: BalloondConfig
    package var sources: [String]

    package init(config: BalloondConfig, sources: [String]) {
        self.config = config
        self.sources = sources
    }
}

/// Reads the main file and its drop-ins from disk.
package enum ConfigLoader {
    /// The file read when `--config` is not given.
    package static let defaultPath = "/etc/balloond.conf"
    /// Files larger than this are refused rather than read.
    static let maximumFileBytes = 1 << 20

    /// Loads `path` then `path + ".d/*.conf"`. If `path` does not exist and
    /// `required` is false (the default location), defaults are used and
    /// drop-ins still apply; if `required` (given with --config) a missing file
    /// is an error naming it. An unreadable file or directory is an error naming
    /// it with the errno text.
    ///
    /// Drop-ins are the regular files (or symlinks to them) in `path.d/` whose
    /// names end in `.conf` and do not start with `.`, applied in byte order of
    /// their names. Subdirectories are skipped. The first error stops loading.
    package static func load(path: String, required: Bool) throws(ConfigError) -> LoadedConfig {
        var config = BalloondConfig()
        var sources: [String] = []
        if let text = try readFile(path, missingIsOK: !required) {
            try ConfigParser.apply(text, file: path, to: &config)
            sources.append(path)
        }
        for dropIn in try dropIns(in: path + ".d") {
            // A file that vanished between listing and opening is an error too:
            // the administrator should see a consistent set.
            guard let text = try readFile(dropIn, missingIsOK: false) else { continue }
            try ConfigParser.apply(text, file: dropIn, to: &config)
            sources.append(dropIn)
        }
        return LoadedConfig(config: config, sources: sources)
    }

    // MARK: - Files (read through BalloonSystem; the wording of each failure is the loader's)

    /// The file's text, or nil if it does not exist and that is fine.
    static func readFile(_ path: String, missingIsOK: Bool) throws(ConfigError) -> String? {
        let file: Descriptor
        do {
            // Non-blocking: a FIFO given by mistake must not hang the daemon.
            file = try Descriptor.openForReading(path, nonBlocking: true)
        } catch {
            if error.errno == .noSuchFileOrDirectory, missingIsOK { return nil }
            throw ConfigError(file: path, message: "cannot open: \(error.cause)")
        }
        let status: FileStatus
        do { status = try file.status(subject: path) } catch {
            throw ConfigError(file: path, message: "cannot stat: \(error.cause)")
        }
        switch status.kind {
        case .directory:
            throw ConfigError(file: path, message: "cannot read: \(SystemError.Cause.errno(.isDirectory))")
        // Regular files, and character devices so that a drop-in symlinked
        // to /dev/null (systemd's way of masking) reads as empty.
        case .regular, .characterDevice:
            break
        default:
            throw ConfigError(file: path, message: "cannot read: not a regular file")
        }
        let bytes: [UInt8]
        do { bytes = try file.readToEnd(limit: maximumFileBytes, subject: path) } catch {
            throw ConfigError(file: path, message: "cannot read: \(error.cause)")
        }
        guard bytes.count <= maximumFileBytes else {
            throw ConfigError(file: path, message: "larger than \(maximumFileBytes) bytes; not a configuration file")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(file: path, message: "not valid UTF-8 text")
        }
        return text
    }

    /// The drop-in files of `directory`, sorted; none if it does not exist.
    static func dropIns(in directory: String) throws(ConfigError) -> [String] {
        var names: [String]
        do { names = try directoryEntries(directory) } catch {
            if error.operation == "opendir" {
                if error.errno == .noSuchFileOrDirectory { return [] }
                throw ConfigError(file: directory, message: "cannot open directory: \(error.cause)")
            }
            throw ConfigError(file: directory, message: "cannot read directory: \(error.cause)")
        }
        names.removeAll { !$0.hasSuffix(".conf") || $0.hasPrefix(".") }
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }

        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        // Skip subdirectories; anything stat cannot see is reported by readFile.
        return names.map { prefix + $0 }.filter { (try? FileStatus.of($0))?.kind != .directory }
    }
}

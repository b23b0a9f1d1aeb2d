#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A configuration and the files it was built from, in the order applied.
public struct LoadedConfig: Sendable {
    public var config: BalloondConfig
    public var sources: [String]

    public init(config: BalloondConfig, sources: [String]) {
        self.config = config
        self.sources = sources
    }
}

/// Reads the main file and its drop-ins from disk.
public enum ConfigLoader {
    /// The file read when `--config` is not given.
    public static let defaultPath = "/etc/balloond.conf"
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
    public static func load(path: String, required: Bool) throws(ConfigError) -> LoadedConfig {
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

    // MARK: - Files

    static func errnoText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    /// The file's text, or nil if it does not exist and that is fine.
    static func readFile(_ path: String, missingIsOK: Bool) throws(ConfigError) -> String? {
        var fd: Int32
        // O_NONBLOCK: a FIFO given by mistake must not hang the daemon.
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) } while fd < 0 && errno == EINTR
        if fd < 0 {
            let code = errno
            if code == ENOENT, missingIsOK { return nil }
            throw ConfigError(file: path, message: "cannot open: \(errnoText(code))")
        }
        defer { close(fd) }

        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw ConfigError(file: path, message: "cannot stat: \(errnoText(errno))")
        }
        let type = status.st_mode & S_IFMT
        if type == S_IFDIR {
            throw ConfigError(file: path, message: "cannot read: \(errnoText(EISDIR))")
        }
        // Regular files, and character devices so that a drop-in symlinked
        // to /dev/null (systemd's way of masking) reads as empty.
        guard type == S_IFREG || type == S_IFCHR else {
            throw ConfigError(file: path, message: "cannot read: not a regular file")
        }

        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                throw ConfigError(file: path, message: "cannot read: \(errnoText(code))")
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
            guard bytes.count <= maximumFileBytes else {
                throw ConfigError(file: path, message: "larger than \(maximumFileBytes) bytes; not a configuration file")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(file: path, message: "not valid UTF-8 text")
        }
        return text
    }

    /// The drop-in files of `directory`, sorted; none if it does not exist.
    static func dropIns(in directory: String) throws(ConfigError) -> [String] {
        guard let stream = opendir(directory) else {
            let code = errno
            if code == ENOENT { return [] }
            throw ConfigError(file: directory, message: "cannot open directory: \(errnoText(code))")
        }
        defer { closedir(stream) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                let code = errno
                if code != 0 {
                    throw ConfigError(file: directory, message: "cannot read directory: \(errnoText(code))")
                }
                break
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: $0.pointee)) {
                    String(cString: $0)
                }
            }
            guard name.hasSuffix(".conf"), !name.hasPrefix(".") else { continue }
            names.append(name)
        }
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }

        var files: [String] = []
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        for name in names {
            let file = prefix + name
            var status = stat()
            // Skip subdirectories; anything stat cannot see is reported by readFile.
            if stat(file, &status) == 0, status.st_mode & S_IFMT == S_IFDIR { continue }
            files.append(file)
        }
        return files
    }
}

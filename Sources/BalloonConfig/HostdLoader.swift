// SPDX-License-Identifier: Apache-2.0

/// Reads balloon-hostd's files: the main file, then one `NAME.conf` per
/// guest in `GuestDirectory=` (regular files, byte order, as balloond's
/// drop-ins). Errors name the file, line and key as balloond.conf's do.
package enum HostdLoader {
    /// A guest name: letters, digits, `.`, `_`, `-`; what `balloonctl --guest` takes.
    package static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && !name.hasPrefix(".")
            && name.utf8.allSatisfy { isDigit($0) || ($0 | 0x20 >= UInt8(ascii: "a") && $0 | 0x20 <= UInt8(ascii: "z")) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// `required`: the path came from `--config` (a missing file is an error).
    package static func load(path: String, required: Bool) throws(ConfigError) -> HostdSetup {
        var setup = HostdSetup()
        if let text = try ConfigLoader.readFile(path, missingIsOK: !required) {
            try parseHost(text, file: path, into: &setup.config)
            setup.sources.append(path)
        }
        for file in try ConfigLoader.dropIns(in: setup.config.guestDirectory) {
            let base = String(file.split(separator: "/").last ?? "")
            let name = String(base.dropLast(".conf".count))
            guard isValidName(name) else {
                throw ConfigError(file: file, message: "\"\(name)\" is not a guest name (letters, digits, '.', '_' and '-')")
            }
            guard let text = try ConfigLoader.readFile(file, missingIsOK: false) else { continue }
            setup.guests[name] = try parseGuest(text, file: file)
            setup.guestFiles[name] = file
            setup.sources.append(file)
        }
        return setup
    }

    package static func parseHost(_ text: String, file: String, into config: inout HostdConfig) throws(ConfigError) {
        try ConfigParser.apply(text, file: file, to: &config, schema: HostdKeys.hostSchema)
    }

    /// One guest file; `Channel=` is required.
    package static func parseGuest(_ text: String, file: String) throws(ConfigError) -> GuestConfig {
        var guest = GuestConfig()
        try ConfigParser.apply(text, file: file, to: &guest, schema: HostdKeys.guestSchema)
        guard guest.channel != nil else {
            throw ConfigError(file: file, section: "Guest", key: "Channel", message: "required (where the guest's balloond listens: unix:PATH, vsock:CID:PORT or hybrid-vsock:PATH:PORT)")
        }
        return guest
    }

    /// `--dump-config`: the main file's keys, then each guest's file.
    package static func render(_ setup: HostdSetup) -> String {
        var text = "# " + (setup.sources.first.map { "from \($0)" } ?? "built-in defaults") + "\n"
        text += HostdKey.render(HostdKeys.host, setup.config)
        for name in setup.guests.keys.sorted() {
            text += "\n# \(setup.guestFiles[name] ?? name)\n"
            text += HostdKey.render(HostdKeys.guest, setup.guests[name]!)
        }
        return text
    }

    /// Each key with its docs line, for docs/hostd.md's check.
    package static var documentedKeys: [(section: String, name: String, doc: String)] {
        HostdKeys.host.map { ($0.section, $0.name, $0.doc) } + HostdKeys.guest.map { ($0.section, $0.name, $0.doc) }
    }
}

// SPDX-License-Identifier: Apache-2.0
/// The sections and keys of one kind of file, as the parser needs them:
/// balloond.conf's table (`ConfigKey`) and balloon-hostd's (`HostdKey`) are
/// both read by the one `ConfigParser`, so both speak the same syntax and
/// their errors read alike.
struct ConfigSchema<Config>: Sendable {
    struct Key: Sendable {
        let section: String
        let name: String
        let apply: @Sendable (String, inout Config) throws(ValueError) -> Void
        let reset: @Sendable (inout Config) -> Void
    }

    let sections: [String]
    let keys: [Key]
    /// The section named in "write e.g. [X] alone on its line".
    let example: String

    func lookup(section: String, name: String) -> Key? {
        keys.first { $0.section == section && $0.name == name }
    }
}

extension ConfigKey {
    /// balloond.conf's schema.
    static let schema = ConfigSchema<BalloondConfig>(
        sections: ConfigSection.allCases.map(\.rawValue),
        keys: allCases.map { key in
            .init(section: key.section.rawValue, name: key.name, apply: key.apply, reset: key.reset)
        },
        example: ConfigSection.balloon.rawValue)
}

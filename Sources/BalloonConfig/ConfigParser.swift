// SPDX-License-Identifier: Apache-2.0
/// The systemd-style file format: `[Section]` headers, `Key=Value` lines,
/// `#` and `;` comment lines, blank lines. LF or CRLF line endings; whitespace
/// around keys and values is ignored; a repeated key's last value wins; an
/// empty value (`Key=`) puts the key's default back. Every file starts outside
/// any section, so each drop-in needs its own headers.
package enum ConfigParser {
    /// Applies one file's text on top of `config`. On error `config` is left
    /// unchanged and the error names `file`, the line and the key (or line).
    package static func apply(_ text: String, file: String, to config: inout BalloondConfig) throws(ConfigError) {
        try apply(text, file: file, to: &config, schema: ConfigKey.schema)
    }

    /// The same for any file kind's `schema` (balloon-hostd's files too).
    static func apply<Config>(_ text: String, file: String, to config: inout Config, schema: ConfigSchema<Config>) throws(ConfigError) {
        var result = config
        var section: String?
        var lineNumber = 0
        for rawLine in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var bytes = Array(rawLine)
            if lineNumber == 1, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }  // UTF-8 BOM
            bytes = trimASCIIWhitespace(bytes)  // also drops the CR of CRLF
            guard let first = bytes.first else { continue }
            if first == UInt8(ascii: "#") || first == UInt8(ascii: ";") { continue }
            let line = String(decoding: bytes, as: UTF8.self)

            if first == UInt8(ascii: "[") {
                guard bytes.last == UInt8(ascii: "]"), bytes.count >= 2 else {
                    throw ConfigError(
                        file: file, line: lineNumber,
                        message: "\"\(line)\" is not a section header (write e.g. [\(schema.example)] alone on its line)")
                }
                let name = String(decoding: bytes.dropFirst().dropLast(), as: UTF8.self)
                guard schema.sections.contains(name) else {
                    let names = schema.sections.map { "[\($0)]" }.joined(separator: ", ")
                    throw ConfigError(
                        file: file, line: lineNumber, section: name,
                        message: "unknown section [\(name)] (known sections: \(names))")
                }
                section = name
                continue
            }

            guard let equals = bytes.firstIndex(of: UInt8(ascii: "=")) else {
                throw ConfigError(
                    file: file, line: lineNumber, section: section,
                    message: "\"\(line)\" is not a Key=Value line, a [Section] header or a comment")
            }
            let keyName = String(decoding: trimASCIIWhitespace(Array(bytes[..<equals])), as: UTF8.self)
            let value = String(decoding: trimASCIIWhitespace(Array(bytes[(equals + 1)...])), as: UTF8.self)
            guard !keyName.isEmpty else {
                throw ConfigError(
                    file: file, line: lineNumber, section: section,
                    message: "\"\(line)\" has no key before the \"=\"")
            }
            guard let section else {
                let home = schema.keys.first { $0.name == keyName }
                let hint = home.map { "; it belongs in [\($0.section)]" } ?? ""
                throw ConfigError(
                    file: file, line: lineNumber, key: keyName,
                    message: "key outside any section\(hint)")
            }
            guard let key = schema.lookup(section: section, name: keyName) else {
                let known = schema.keys.filter { $0.section == section }.map(\.name).joined(separator: ", ")
                var message = "unknown key (keys of [\(section)]: \(known))"
                if let elsewhere = schema.keys.first(where: { $0.name == keyName }) {
                    message = "unknown key in [\(section)]; it belongs in [\(elsewhere.section)]"
                }
                throw ConfigError(
                    file: file, line: lineNumber, section: section, key: keyName, message: message)
            }
            if value.isEmpty {
                key.reset(&result)
                continue
            }
            do {
                try key.apply(value, &result)
            } catch {
                throw ConfigError(
                    file: file, line: lineNumber, section: section, key: keyName, message: error.message)
            }
        }
        config = result
    }
}

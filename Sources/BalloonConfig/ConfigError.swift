// SPDX-License-Identifier: Apache-2.0
/// A configuration that cannot be used, and where: the file, the line, the
/// section and key (or, for a line that is none of those, the line itself in
/// `message`).
///
/// `description` reads like
/// `/etc/balloond.conf:12: [Balloon] ChunkSize: "64Q" is not a size (use e.g. 64M or 2G)`.
package struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file at fault; empty for a value not read from a file (e.g. `--channel`).
    package var file: String
    /// 1-based line number, or nil for errors about a whole file or directory.
    package var line: Int?
    /// The section in effect, or the unknown section's name.
    package var section: String?
    /// The key at fault, if the error is about one.
    package var key: String?
    /// What is wrong, without the location.
    package var message: String

    package init(file: String, line: Int? = nil, section: String? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.section = section
        self.key = key
        self.message = message
    }

    package var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if !text.isEmpty { text += ": " }
        if let key {
            if let section { text += "[\(section)] " }
            text += "\(key): "
        }
        return text + message
    }
}

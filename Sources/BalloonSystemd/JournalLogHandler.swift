// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import CSystemd
import Glibc
import Logging

/// Whether standard error is connected to the journal: systemd sets
/// `JOURNAL_STREAM=DEV:INODE` for a service whose stderr is a journal stream;
/// it holds only if fd 2 still is that stream (a child whose stderr was
/// redirected inherits the variable, so the variable alone proves nothing).
public enum JournalStream {
    public static func standardErrorIsJournal() -> Bool {
        matches(descriptor: 2, value: ProcessControl.environment("JOURNAL_STREAM"))
    }

    /// `value` is `DEV:INODE` in decimal, compared with `fstat(descriptor)`.
    public static func matches(descriptor: Int32, value: String?) -> Bool {
        guard let value, let (device, inode) = parse(value) else { return false }
        // A descriptor that cannot be examined is not the journal.
        guard let identity = try? ProcessControl.fileIdentity(of: descriptor) else { return false }
        return identity.device == device && identity.inode == inode
    }

    static func parse(_ value: String) -> (UInt64, UInt64)? {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return nil }
        return (device, inode)
    }
}

/// A swift-log handler writing structured journal entries with
/// `sd_journal_sendv(3)`: `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`,
/// `CODE_FILE`/`CODE_LINE`/`CODE_FUNC`, `LOGGER_LABEL`, and each metadata
/// item as a field of its own (key sanitised by `JournalFields.fieldName`).
/// `MESSAGE` also carries the metadata as `key=value` pairs, so a plain
/// `journalctl -u balloond` shows it; `-o verbose` or `-o json` shows fields.
///
/// If the journal refuses an entry (journald down), the line goes to stderr
/// instead, which under systemd is the journal's stream: the message is not lost
/// and is never written twice.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    public let label: String
    public let identifier: String

    public init(label: String, identifier: String = "balloond", metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.identifier = identifier
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let own = event.metadata { merged.merge(own) { $1 } }
        let fields = JournalFields.make(
            level: event.level, message: "\(event.message)", metadata: merged, label: label,
            identifier: identifier, file: event.file, function: event.function, line: event.line)
        if JournalFields.send(fields) != 0 {
            var text = JournalFields.plainText(message: "\(event.message)", metadata: merged)
            text = "\(identifier): \(text)\n"
            ProcessControl.writeToStandardError(Array(text.utf8))
        }
    }
}

/// Building and sending journal fields; pure except `send`.
public enum JournalFields {
    /// Fields this handler sets itself; metadata keys that sanitise to one of
    /// these (or to another field journald or the journal API gives meaning to)
    /// get the `META_` prefix instead of overwriting it.
    public static let reserved: Set<String> = [
        "MESSAGE", "MESSAGE_ID", "PRIORITY", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "ERRNO",
        "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "SYSLOG_PID", "SYSLOG_TIMESTAMP", "SYSLOG_RAW",
        "LOGGER_LABEL", "INVOCATION_ID", "USER_INVOCATION_ID", "DOCUMENTATION", "TID", "UNIT", "USER_UNIT",
        "OBJECT_PID", "OBJECT_UID", "OBJECT_GID", "OBJECT_COMM", "OBJECT_EXE", "OBJECT_CMDLINE",
        "OBJECT_SYSTEMD_UNIT", "OBJECT_SYSTEMD_USER_UNIT", "COREDUMP_UNIT", "COREDUMP_USER_UNIT",
    ]

    /// journald's limit on a field name.
    public static let maxNameLength = 64

    /// A journal field name from a metadata key: upper case; anything but
    /// A–Z and 0–9 becomes `_`; a name that is empty, starts with a digit or
    /// `_` (journald drops those: `_` marks trusted fields), or equals a
    /// reserved field gets the prefix `META_`; at most 64 characters.
    public static func fieldName(_ key: String) -> String {
        var name = ""
        for scalar in key.unicodeScalars {
            switch scalar {
            case "a"..."z": name.unicodeScalars.append(Unicode.Scalar(scalar.value - 32)!)
            case "A"..."Z", "0"..."9": name.unicodeScalars.append(scalar)
            default: name.append("_")
            }
        }
        if name.isEmpty || name.first == "_" || name.first!.isNumber || reserved.contains(name)
            || name.hasPrefix("CODE_") || name.hasPrefix("SYSLOG_") || name.hasPrefix("OBJECT_")
        {
            name = "META_" + name
        }
        return String(name.prefix(maxNameLength))
    }

    /// syslog priorities (sd-journal's `PRIORITY=`).
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `message key=value key=value`, keys sorted.
    public static func plainText(message: String, metadata: Logger.Metadata) -> String {
        guard !metadata.isEmpty else { return message }
        let pairs = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return message + " " + pairs.joined(separator: " ")
    }

    /// Every `NAME=value` field of one entry, in a fixed order.
    public static func make(
        level: Logger.Level, message: String, metadata: Logger.Metadata, label: String, identifier: String,
        file: String, function: String, line: UInt
    ) -> [String] {
        var fields = [
            "MESSAGE=\(plainText(message: message, metadata: metadata))",
            "PRIORITY=\(priority(level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "CODE_FILE=\(file)",
            "CODE_LINE=\(line)",
            "CODE_FUNC=\(function)",
            "LOGGER_LABEL=\(label)",
        ]
        var used = Set<String>()
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            var name = fieldName(key)
            // Two keys that sanitise alike ("a-b", "a_b") both survive.
            var n = 2
            while used.contains(name) {
                name = String(fieldName(key).prefix(maxNameLength - 4)) + "_\(n)"
                n += 1
            }
            used.insert(name)
            fields.append("\(name)=\(value)")
        }
        return fields
    }

    /// `sd_journal_sendv`: 0 or a negative errno. Values may hold newlines or
    /// any bytes: each iovec carries its length. One contiguous allocation
    /// holds every field and the iovecs point into it.
    public static func send(_ fields: [String]) -> Int32 {
        let buffers = fields.map { Array($0.utf8) }
        let total = buffers.reduce(0) { $0 + $1.count }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
        defer { storage.deallocate() }
        let iov = UnsafeMutablePointer<iovec>.allocate(capacity: max(buffers.count, 1))
        defer { iov.deallocate() }
        var offset = 0
        for (i, buffer) in buffers.enumerated() {
            let base = storage.baseAddress! + offset
            buffer.withUnsafeBytes { src in
                if src.count > 0 { base.copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
            iov[i] = iovec(iov_base: base, iov_len: buffer.count)
            offset += buffer.count
        }
        return sd_journal_sendv(iov, Int32(buffers.count))
    }
}

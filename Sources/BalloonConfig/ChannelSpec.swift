// SPDX-License-Identifier: Apache-2.0
/// Where balloond talks to the host: the value of `Listen=` and of the
/// daemon's `--channel` flag.
///
/// - `virtio-serial:NAME` — the port `/dev/virtio-ports/NAME`;
///   `virtio-serial:/ABSOLUTE/PATH` — that character device as is.
/// - `vsock:PORT` — listen on that vsock port; `vsock` or `vsock:` alone
///   means port 7468.
/// - `unix:PATH` — listen on a unix stream socket (development, tests).
public enum ChannelSpec: Sendable, Equatable, CustomStringConvertible {
    case virtioSerial(String)
    case vsock(port: UInt32)
    case unix(path: String)

    /// The vsock port used by `vsock` and `vsock:`.
    package static let defaultVsockPort: UInt32 = 7468
    /// Where virtio-serial port names are looked up.
    package static let virtioPortsDirectory = "/dev/virtio-ports/"
    /// `VMADDR_PORT_ANY`; not a port one can listen on by name.
    static let vsockPortAny: UInt32 = 0xFFFF_FFFF
    /// `sizeof(sockaddr_un.sun_path)` less the terminating NUL.
    static let maxUnixPathBytes = 107

    /// The device to open for a virtio-serial channel: a name resolved under
    /// `/dev/virtio-ports/`, an absolute path as is; nil for other channels.
    package var devicePath: String? {
        guard case .virtioSerial(let nameOrPath) = self else { return nil }
        return nameOrPath.hasPrefix("/") ? nameOrPath : Self.virtioPortsDirectory + nameOrPath
    }

    public var description: String {
        switch self {
        case .virtioSerial(let nameOrPath): return "virtio-serial:\(nameOrPath)"
        case .vsock(let port): return "vsock:\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }

    static let usage = "use virtio-serial:NAME, virtio-serial:/PATH, vsock:PORT or unix:PATH"

    /// Parses a channel. Leading and trailing whitespace is ignored. The error
    /// has an empty `file` and no line; the configuration parser fills them in.
    package static func parse(_ text: String) throws(ConfigError) -> ChannelSpec {
        let text = trimmed(text)
        func fail(_ why: String) -> ConfigError {
            ConfigError(file: "", message: "\"\(text)\" is not a channel: \(why)")
        }
        if text == "vsock" { return .vsock(port: defaultVsockPort) }
        guard let colon = text.firstIndex(of: ":") else {
            throw fail(text.isEmpty ? "empty (\(usage))" : "no TYPE: prefix (\(usage))")
        }
        let kind = text[..<colon]
        let argument = String(text[text.index(after: colon)...])
        if argument.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw fail("contains a control character")
        }
        switch kind {
        case "virtio-serial":
            guard !argument.isEmpty else { throw fail("the port name is missing (e.g. virtio-serial:org.balloond.0)") }
            if argument.first!.isWhitespace { throw fail("the port name starts with a space") }
            if !argument.hasPrefix("/"), argument.contains("/") {
                throw fail("give a port name from \(virtioPortsDirectory) or an absolute path")
            }
            return .virtioSerial(argument)
        case "vsock":
            if argument.isEmpty { return .vsock(port: defaultVsockPort) }
            guard argument.utf8.allSatisfy(isDigit), let port = UInt32(argument) else {
                throw fail("the vsock port must be a number from 0 to 4294967294")
            }
            guard port != vsockPortAny else { throw fail("4294967295 is VMADDR_PORT_ANY, not a port to listen on") }
            return .vsock(port: port)
        case "unix":
            guard !argument.isEmpty else { throw fail("the socket path is missing (e.g. unix:/run/balloond.sock)") }
            if argument.first!.isWhitespace { throw fail("the socket path starts with a space") }
            guard argument.utf8.count <= maxUnixPathBytes else {
                throw fail("the socket path is longer than \(maxUnixPathBytes) bytes")
            }
            return .unix(path: argument)
        default:
            throw fail("unknown channel type \"\(kind)\" (\(usage))")
        }
    }
}

/// Which vsock peers may connect (`VsockAllowedCIDs=`).
package enum VsockPeers: Sendable, Equatable {
    case any
    case cids([UInt32])

    package func allows(_ cid: UInt32) -> Bool {
        switch self {
        case .any: return true
        case .cids(let cids): return cids.contains(cid)
        }
    }
}

/// The log threshold (`Level=`); the raw values are the accepted spellings.
public enum LogLevel: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

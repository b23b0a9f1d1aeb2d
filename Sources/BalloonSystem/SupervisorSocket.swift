// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc
import SystemPackage

/// systemd's notification protocol (`sd_notify(3)`) without libsystemd: one
/// datagram of `KEY=VALUE` lines to the unix socket `NOTIFY_SOCKET` names.
/// Written here rather than linked so that static executables (balloon-hostd;
/// Debian ships no libsystemd.a) can speak it too.
package enum SupervisorSocket {
    /// `NOTIFY_SOCKET`: a path, or `@name` in the abstract namespace; nil when unset.
    package static var address: String? {
        guard let value = ProcessControl.environment("NOTIFY_SOCKET"), !value.isEmpty else { return nil }
        return value
    }

    /// Sends `state` to `address` (a fresh socket per message, as sd_notify does:
    /// nothing is held open between watchdog pings).
    package static func send(_ state: String, to address: String) throws(SystemError) {
        guard address.hasPrefix("/") || address.hasPrefix("@") else {
            throw SystemError("sendto(NOTIFY_SOCKET)", subject: address, errno: Errno(rawValue: EAFNOSUPPORT))
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array(address.utf8)
        guard path.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw SystemError("sendto(NOTIFY_SOCKET)", subject: address, errno: Errno(rawValue: ENAMETOOLONG))
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in path.enumerated() { raw[i] = byte }
            if path.first == UInt8(ascii: "@") { raw[0] = 0 }
        }
        // An abstract name's length is exact (no terminating NUL counts).
        let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.count + (path.first == UInt8(ascii: "@") ? 0 : 1)
        let fd = Descriptor(adopting: try syscall("socket(AF_UNIX, SOCK_DGRAM)") {
            socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        defer { fd.close() }
        let bytes = Array(state.utf8)
        let sent = try syscall("sendto(NOTIFY_SOCKET)", subject: address) {
            bytes.withUnsafeBytes { buffer in
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd.raw, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), $0, socklen_t(length))
                    }
                }
            }
        }
        guard sent == bytes.count else {
            throw SystemError("sendto(NOTIFY_SOCKET)", subject: address, errno: Errno(rawValue: EMSGSIZE))
        }
    }

    /// `WATCHDOG_USEC` when the watchdog is meant for this process
    /// (`WATCHDOG_PID` unset or ours), as `sd_watchdog_enabled(3)` reads it.
    package static func watchdogInterval() -> Duration? {
        guard let text = ProcessControl.environment("WATCHDOG_USEC"), let usec = UInt64(text), usec > 0 else { return nil }
        if let pid = ProcessControl.environment("WATCHDOG_PID"), Int32(pid) != getpid() { return nil }
        return .microseconds(Int64(clamping: usec))
    }
}

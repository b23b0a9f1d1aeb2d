// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc

/// TCP listeners (balloon-hostd's metrics endpoint).
extension StreamSocket {
    /// Listens on an IPv4 (4 bytes) or IPv6 (16 bytes, IPv6 only) address in
    /// network order; non-blocking, close-on-exec, SO_REUSEADDR so a restart
    /// does not wait out TIME_WAIT. Port 0: any free port (`localPort`).
    /// `subject`: the address as the user wrote it, for errors.
    package static func listenTCP(address: [UInt8], port: UInt16, subject: String, backlog: Int32 = 16) throws(SystemError) -> Descriptor {
        precondition(address.count == 4 || address.count == 16, "an IPv4 or IPv6 address")
        let v6 = address.count == 16
        let family = v6 ? AF_INET6 : AF_INET
        let fd = Descriptor(adopting: try syscall("socket(AF_INET\(v6 ? "6" : ""))") {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        })
        var one: Int32 = 1
        _ = try syscall("setsockopt(SO_REUSEADDR)", subject: subject) {
            setsockopt(fd.raw, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if v6 {
            _ = try syscall("setsockopt(IPV6_V6ONLY)", subject: subject) {
                setsockopt(fd.raw, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: address) }
            _ = try syscall("bind", subject: subject) {
                withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: address) }
            _ = try syscall("bind", subject: subject) {
                withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
        }
        _ = try syscall("listen", subject: subject) { listen(fd.raw, backlog) }
        return fd
    }

    /// The port a TCP socket is bound to (getsockname).
    package static func localPort(_ fd: Descriptor) throws(SystemError) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try syscall("getsockname") {
            withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd.raw, $0, &length) } }
        }
        return withUnsafeBytes(of: &storage) { raw -> UInt16 in
            // sin_port and sin6_port both sit right after the family.
            UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }
}

extension StreamSocket {
    /// Ends our sending side (shutdown SHUT_WR): the peer reads EOF after
    /// what was sent, while we may still read. A peer already gone (ENOTCONN)
    /// needs nothing more.
    package static func shutdownWrite(_ fd: Descriptor) {
        bestEffortSyscall("shutdown(SHUT_WR)", tolerating: [.socketNotConnected]) { shutdown(fd.raw, Int32(SHUT_WR)) }
    }
}

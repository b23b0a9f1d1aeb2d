// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc
import SystemPackage

/// Stream sockets: unix (development, tests, QEMU chardev) and vsock.
package enum StreamSocket {
    /// Listens on a unix socket path, replacing a stale socket file left by a
    /// previous run (only if it is a socket nobody answers on).
    package static func listenUnix(path: String, backlog: Int32 = 4) throws(SystemError) -> Descriptor {
        try removeStaleSocket(path)
        let fd = Descriptor(adopting: try syscall("socket(AF_UNIX)") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        })
        _ = try syscall("bind", subject: path) { cballoon_unix_bind(fd.raw, path) }
        _ = try syscall("listen", subject: path) { listen(fd.raw, backlog) }
        return fd
    }

    /// Connects to a unix socket; the result is blocking unless asked otherwise.
    package static func connectUnix(path: String, nonBlocking: Bool = false) throws(SystemError) -> Descriptor {
        let fd = Descriptor(adopting: try syscall("socket(AF_UNIX)") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        _ = try syscall("connect", subject: path) { cballoon_unix_connect(fd.raw, path) }
        if nonBlocking { try fd.setNonBlocking() }
        return fd
    }

    /// Accepts one pending connection (non-blocking), or nil if none.
    package static func accept(_ listener: Descriptor) throws(SystemError) -> Descriptor? {
        guard let fd = try nonBlockingSyscall("accept4", {
            cballoon_accept4(listener.raw, Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        }) else { return nil }
        return Descriptor(adopting: fd)
    }

    /// Who is at the other end of a connected unix socket (SO_PEERCRED: the
    /// credentials the peer had when it connected).
    package static func peerCredentials(_ fd: Descriptor) throws(SystemError) -> PeerCredentials {
        var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        _ = try syscall("getsockopt(SO_PEERCRED)") { cballoon_peer_credentials(fd.raw, &pid, &uid, &gid) }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// The peer's supplementary groups (SO_PEERGROUPS, Linux 4.13), as they
    /// were when it connected.
    package static func peerGroups(_ fd: Descriptor) throws(SystemError) -> [UInt32] {
        var capacity: UInt32 = 64
        while true {
            var groups = [UInt32](repeating: 0, count: Int(capacity))
            var count = capacity
            let result = groups.withUnsafeMutableBufferPointer { buffer in
                funnel({ "getsockopt(SO_PEERGROUPS)" }, tolerating: [Errno(rawValue: ERANGE)]) {
                    cballoon_peer_groups(fd.raw, buffer.baseAddress, &count)
                }
            }
            switch result {
            case .success: return Array(groups.prefix(Int(min(count, capacity))))
            case .failure(let code) where code.rawValue == ERANGE && count > capacity && count <= 1 << 16: capacity = count
            case .failure(let code): throw SystemError("getsockopt(SO_PEERGROUPS)", errno: code)
            }
        }
    }

    package static func listenVsock(port: UInt32, cid: UInt32 = cballoon_VMADDR_CID_ANY, backlog: Int32 = 4) throws(SystemError) -> Descriptor {
        let fd = Descriptor(adopting: try syscall("socket(AF_VSOCK)") {
            socket(AF_VSOCK, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        })
        _ = try syscall("bind", subject: "vsock port \(port)") { cballoon_vsock_bind(fd.raw, cid, port) }
        _ = try syscall("listen", subject: "vsock port \(port)") { listen(fd.raw, backlog) }
        return fd
    }

    /// Accepts a vsock connection and says which CID it came from.
    package static func acceptVsock(_ listener: Descriptor) throws(SystemError) -> (Descriptor, cid: UInt32)? {
        var cid: UInt32 = 0, port: UInt32 = 0
        guard let fd = try nonBlockingSyscall("accept4(vsock)", {
            cballoon_vsock_accept(listener.raw, &cid, &port, Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        }) else { return nil }
        return (Descriptor(adopting: fd), cid)
    }

    package static func connectVsock(cid: UInt32, port: UInt32) throws(SystemError) -> Descriptor {
        let fd = Descriptor(adopting: try syscall("socket(AF_VSOCK)") {
            socket(AF_VSOCK, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        _ = try syscall("connect", subject: "vsock \(cid):\(port)") { cballoon_vsock_connect(fd.raw, cid, port) }
        return fd
    }

    /// A connected pair, for tests.
    package static func pair() throws(SystemError) -> (Descriptor, Descriptor) {
        var fds: [Int32] = [0, 0]
        _ = try syscall("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) }
        return (Descriptor(adopting: fds[0]), Descriptor(adopting: fds[1]))
    }

    package static func setReceiveTimeout(_ fd: Descriptor, milliseconds: Int) throws(SystemError) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        _ = try syscall("setsockopt(SO_RCVTIMEO)") {
            setsockopt(fd.raw, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    private static func removeStaleSocket(_ path: String) throws(SystemError) {
        // Nothing there (or nothing we can see): bind says what is wrong.
        guard let status = try? FileStatus.ofLink(path) else { return }
        guard status.kind == .socket else { throw SystemError("bind", subject: path, cause: .notASocket) }
        if let live = try? connectUnix(path: path) {
            live.close()
            throw SystemError("bind", subject: path, cause: .socketInUse)
        }
        // Gone meanwhile is as good as removed; anything else, bind reports.
        _ = try? syscall("unlink", subject: path) { unlink(path) }
    }
}

package let vsockHostCID: UInt32 = cballoon_VMADDR_CID_HOST
package let vsockLocalCID: UInt32 = cballoon_VMADDR_CID_LOCAL

/// The guest end of a virtio-serial port. While no host is attached, poll
/// reports HUP and read returns 0 without end; with O_ASYNC + F_SETOWN the
/// kernel sends SIGIO when a host attaches, which is how the loop avoids
/// spinning (docs/architecture.md).
package enum VirtioSerialPort {
    package static let directory = "/dev/virtio-ports"

    /// A bare name is looked up under /dev/virtio-ports; a path is used as is.
    package static func path(for nameOrPath: String) -> String {
        nameOrPath.hasPrefix("/") ? nameOrPath : "\(directory)/\(nameOrPath)"
    }

    package static func open(_ nameOrPath: String) throws(SystemError) -> Descriptor {
        let path = path(for: nameOrPath)
        let fd = try Descriptor.open(path, flags: O_RDWR | O_NONBLOCK)
        let flags = try syscall("fcntl(F_GETFL)", subject: path) { cballoon_fcntl_getfl(fd.raw) }
        _ = try syscall("fcntl(F_SETFL O_ASYNC)", subject: path) { cballoon_fcntl_setfl(fd.raw, flags | O_ASYNC) }
        _ = try syscall("fcntl(F_SETOWN)", subject: path) { cballoon_fcntl_setown(fd.raw, getpid()) }
        return fd
    }

    /// Whether a host is attached now (poll without HUP).
    package static func hostAttached(_ fd: Descriptor) -> Bool {
        var p = pollfd(fd: fd.raw, events: Int16(POLLIN), revents: 0)
        // A zero-timeout poll of one descriptor we own fails only without
        // memory (ENOMEM): then no host is known to be there.
        guard case .success = funnel({ "poll" }, { poll(&p, 1, 0) }) else { return false }
        return (p.revents & Int16(POLLHUP)) == 0
    }
}

/// A unix socket peer's process and identity when it connected.
package struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    package var pid: Int32
    package var uid: UInt32
    package var gid: UInt32
    package init(pid: Int32, uid: UInt32, gid: UInt32) { self.pid = pid; self.uid = uid; self.gid = gid }
    package var description: String { "pid \(pid) uid \(uid) gid \(gid)" }
}

// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc

/// Non-blocking stream helpers for an event loop (balloonctl serve).
package enum StreamIO {
    /// Sends what the socket takes now, without SIGPIPE. nil: it would block.
    package static func sendSome(_ fd: Descriptor, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int? {
        try sendSome(raw: fd.raw, bytes)
    }

    static func sendSome(raw fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int? {
        guard bytes.count > 0 else { return 0 }
        return try nonBlockingSyscall("send") { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
    }

    /// Reads what is there; 0 is end of stream, nil means nothing yet.
    package static func receiveSome(_ fd: Descriptor, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        try fd.read(into: buffer)
    }

    /// Whether the peer has shut its side down (unread bytes may remain).
    /// A failed poll (ENOMEM) says nothing either way: not closed.
    package static func peerClosed(_ fd: Descriptor) -> Bool { peerClosed(raw: fd.raw) }

    static func peerClosed(raw fd: Int32) -> Bool {
        guard case .success(let closed) = funnel({ "poll(POLLRDHUP)" }, { cballoon_peer_closed(fd) }) else { return false }
        return closed == 1
    }

    /// A listening unix socket only its owner can use (mode 0600): created
    /// under umask 0177, so there is no window where others could connect.
    package static func listenUnixPrivate(path: String, backlog: Int32 = 16) throws(SystemError) -> Descriptor {
        let old = umask(0o177)  // umask(2) cannot fail
        defer { umask(old) }
        let fd = try StreamSocket.listenUnix(path: path, backlog: backlog)
        _ = try syscall("chmod", subject: path) { chmod(path, 0o600) }
        return fd
    }

    /// Opens a socket made by `listenUnixPrivate` to one group as well:
    /// group `gid`, mode 0660 (`[Host] ControlGroup=`).
    package static func shareWithGroup(path: String, gid: UInt32) throws(SystemError) {
        _ = try syscall("chown", subject: path) { chown(path, uid_t.max, gid) }  // -1: the owner stays
        _ = try syscall("chmod", subject: path) { chmod(path, 0o660) }
    }

    /// The file mode bits of `path` (tests, diagnostics).
    package static func mode(of path: String) throws(SystemError) -> UInt32 {
        try FileStatus.of(path).permissions
    }
}

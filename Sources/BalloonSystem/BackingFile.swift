import CBalloonShim
import Glibc
import SystemPackage

/// A guest's RAM backend seen from the host: a regular file (QEMU
/// `-object memory-backend-file,mem-path=/dev/shm/…,share=on`) that can have
/// holes punched in it to give the memory behind freed guest frames back.
public final class BackingFile {
    public let path: String
    public let descriptor: Descriptor

    /// Opens `path` read-write (the file must exist; it is never created or truncated).
    public init(path: String) throws(SystemError) {
        self.path = path
        descriptor = try Descriptor.open(path, flags: O_RDWR)
    }

    /// Adopts an already open descriptor (a memfd, tests).
    public init(descriptor: Descriptor, path: String) {
        self.path = path
        self.descriptor = descriptor
    }

    public struct Status: Sendable, Equatable {
        /// st_size in bytes.
        public var size: UInt64
        /// st_blocks: 512-byte units actually allocated.
        public var blocks: UInt64
        /// Whether it is a regular file.
        public var isRegular: Bool
        public var allocatedBytes: UInt64 { blocks * 512 }
    }

    public func status() throws(SystemError) -> Status {
        var st = stat()
        _ = try syscall("fstat", subject: path) { fstat(descriptor.raw, &st) }
        return Status(size: UInt64(st.st_size), blocks: UInt64(st.st_blocks), isRegular: (st.st_mode & S_IFMT) == S_IFREG)
    }

    /// `fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, offset, length)`:
    /// frees the blocks, the size stays, the range reads back as zeros.
    public func punchHole(offset: UInt64, length: UInt64) throws(SystemError) {
        guard length > 0 else { return }
        guard offset <= UInt64(Int64.max), length <= UInt64(Int64.max) - offset else {
            throw SystemError("fallocate(PUNCH_HOLE)", subject: "\(path) offset \(offset) length \(length)", errno: .invalidArgument)
        }
        _ = try syscall("fallocate(PUNCH_HOLE)", subject: "\(path) offset \(offset) length \(length)") {
            cballoon_fallocate(descriptor.raw, cballoon_FALLOC_FL_PUNCH_HOLE | cballoon_FALLOC_FL_KEEP_SIZE, Int64(offset), Int64(length))
        }
    }
}

/// Non-blocking stream helpers for an event loop (balloonctl serve).
public enum StreamIO {
    /// Sends what the socket takes now, without SIGPIPE. nil: it would block.
    public static func sendSome(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int? {
        guard bytes.count > 0 else { return 0 }
        return try nonBlockingSyscall("send") { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
    }

    /// Reads what is there; 0 is end of stream, nil means nothing yet.
    public static func receiveSome(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        try nonBlockingSyscall("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Whether the peer has shut its side down (unread bytes may remain).
    public static func peerClosed(_ fd: Int32) -> Bool {
        cballoon_peer_closed(fd) == 1
    }

    /// A listening unix socket only its owner can use (mode 0600): created
    /// under umask 0177, so there is no window where others could connect.
    public static func listenUnixPrivate(path: String, backlog: Int32 = 16) throws(SystemError) -> Descriptor {
        let old = umask(0o177)
        defer { umask(old) }
        let fd = try StreamSocket.listenUnix(path: path, backlog: backlog)
        _ = try syscall("chmod", subject: path) { chmod(path, 0o600) }
        return fd
    }

    /// The file mode bits of `path` (tests, diagnostics).
    public static func mode(of path: String) throws(SystemError) -> UInt32 {
        var st = stat()
        _ = try syscall("stat", subject: path) { stat(path, &st) }
        return UInt32(st.st_mode) & 0o7777
    }
}

/// The monotonic clock in nanoseconds (CLOCK_MONOTONIC).
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

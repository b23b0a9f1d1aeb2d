// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc
import SystemPackage

/// Process-wide calls the daemon and the executables need: signal
/// dispositions, reaping children, the environment, standard error, and
/// removing a socket's file.
public enum ProcessControl {
    /// This process's id.
    public static var currentPid: Int32 { getpid() }

    /// A host that hangs up must not kill the daemon with SIGPIPE: writes
    /// then fail with EPIPE, which the caller handles.
    public static func ignoreBrokenPipe() {
        // signal() fails only for an invalid signal number.
        _ = signal(SIGPIPE, SIG_IGN)
    }

    /// Reaps `pid` if it has exited; false while it runs.
    public static func reapIfExited(_ pid: pid_t) throws(SystemError) -> Bool {
        var status: Int32 = 0
        return try syscall("waitpid", subject: "\(pid)") { waitpid(pid, &status, WNOHANG) } == pid
    }

    /// Drops the pages of the executable's relocation table from this
    /// process's page tables: the loader applied it at start and nothing reads
    /// it again, yet it stays resident (about 0.6 MiB of balloond's RSS). The
    /// table is in a read-only segment of the file, so no content changes.
    /// Returns the address range dropped, nil when there was nothing to drop.
    @discardableResult
    public static func releaseRelocationTable() throws(SystemError) -> Range<UInt>? {
        var start: UInt = 0, end: UInt = 0
        let bytes = try syscall("madvise", subject: "relocation table") { cballoon_release_relocations(&start, &end) }
        return bytes > 0 ? start..<end : nil
    }

    /// An environment variable's value, nil when unset.
    /// This process's effective user ID (geteuid cannot fail).
    public static var effectiveUserID: UInt32 { geteuid() }

    /// The ID of group `name` (or `name` itself when it is a number); nil
    /// when there is no such group.
    package static func groupID(named name: String) throws(SystemError) -> UInt32? {
        if let id = UInt32(name) { return id }
        var entry = Glibc.group()
        var found: UnsafeMutablePointer<Glibc.group>?
        var buffer = [CChar](repeating: 0, count: 4096)
        while true {
            // getgrnam_r returns its error; it does not set errno.
            let rc = getgrnam_r(name, &entry, &buffer, buffer.count, &found)
            if rc == ERANGE, buffer.count < 1 << 20 {
                buffer = [CChar](repeating: 0, count: buffer.count * 4)
                continue
            }
            guard rc == 0 else { throw SystemError("getgrnam_r", subject: name, errno: Errno(rawValue: rc)) }
            return found == nil ? nil : entry.gr_gid
        }
    }

    public static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Writes to descriptor 2 without buffering (the last words of a failing
    /// process, or log lines when the journal cannot take them).
    public static func writeToStandardError(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                guard let n = try? syscall("write", subject: "stderr", { write(2, buffer.baseAddress! + offset, buffer.count - offset) }),
                      n > 0 else { return }  // Nowhere left to report a failing stderr.
                offset += n
            }
        }
    }

    /// Removes a file (a unix socket's path when its listener closes).
    public static func removeFile(_ path: String) throws(SystemError) {
        _ = try syscall("unlink", subject: path) { unlink(path) }
    }

    /// The device and inode behind a standard descriptor (is fd 2 still the
    /// journal stream systemd named in JOURNAL_STREAM?). A closed one is not a
    /// programming error (the process did not open it): EBADF is an ordinary
    /// failure here.
    public static func fileIdentity(of fd: Int32) throws(SystemError) -> (device: UInt64, inode: UInt64) {
        var st = stat()
        if case .failure(let code) = funnel({ "fstat" }, tolerating: [.badFileDescriptor], { fstat(fd, &st) }) {
            throw SystemError("fstat", subject: "descriptor \(fd)", errno: code)
        }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Blocks this thread for good (a test fault that stalls the event loop
    /// so the supervisor's watchdog can be seen to act).
    public static func stallForever() -> Never {
        while true { sleep(3600) }
    }
}

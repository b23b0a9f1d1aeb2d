// SPDX-License-Identifier: Apache-2.0
import Glibc
import SystemPackage

/// What stat(2) says about a file, as much as balloond asks.
package struct FileStatus: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        case regular, directory, characterDevice, blockDevice, fifo, socket, symbolicLink, unknown
    }

    package var kind: Kind
    /// st_size in bytes.
    package var size: UInt64
    /// st_blocks: 512-byte units actually allocated.
    package var blocks: UInt64
    /// The permission bits (st_mode & 07777).
    package var permissions: UInt32
    /// st_uid and st_nlink: balloon-hostd checks who owns a RAM file it
    /// finds by itself, and that it has no other names.
    package var owner: UInt32
    package var links: UInt64
    /// st_dev as /proc/PID/maps prints it (major:minor) and st_ino: which
    /// processes map this file (`RamFileMappings`).
    package var deviceMajor: UInt32
    package var deviceMinor: UInt32
    package var inode: UInt64

    init(_ st: stat) {
        kind = switch st.st_mode & S_IFMT {
        case S_IFREG: .regular
        case S_IFDIR: .directory
        case S_IFCHR: .characterDevice
        case S_IFBLK: .blockDevice
        case S_IFIFO: .fifo
        case S_IFSOCK: .socket
        case S_IFLNK: .symbolicLink
        default: .unknown
        }
        size = UInt64(st.st_size)
        blocks = UInt64(st.st_blocks)
        permissions = UInt32(st.st_mode) & 0o7777
        owner = st.st_uid
        links = UInt64(st.st_nlink)
        // glibc's dev_t encoding (gnu_dev_major/minor).
        let dev = UInt64(st.st_dev)
        deviceMajor = UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff)))
        deviceMinor = UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff)))
        inode = UInt64(st.st_ino)
    }

    /// stat(2), following symbolic links.
    package static func of(_ path: String) throws(SystemError) -> FileStatus {
        var st = stat()
        _ = try syscall("stat", subject: path) { stat(path, &st) }
        return FileStatus(st)
    }

    /// lstat(2): a symbolic link is reported as one.
    package static func ofLink(_ path: String) throws(SystemError) -> FileStatus {
        var st = stat()
        _ = try syscall("lstat", subject: path) { lstat(path, &st) }
        return FileStatus(st)
    }
}

extension Descriptor {
    /// Opens a file for reading. `nonBlocking`: a FIFO given by mistake
    /// fails or reads empty instead of hanging the caller.
    package static func openForReading(_ path: String, nonBlocking: Bool = false) throws(SystemError) -> Descriptor {
        try open(path, flags: O_RDONLY | (nonBlocking ? O_NONBLOCK : 0))
    }
}

/// The names in a directory (without `.` and `..`), in the order readdir
/// gives them.
package func directoryEntries(_ path: String) throws(SystemError) -> [String] {
    guard let stream = opendir(path) else {
        throw SystemError("opendir", subject: path, errno: Errno(rawValue: Glibc.errno))
    }
    defer { closedir(stream) }
    var names: [String] = []
    while true {
        // readdir returns NULL both at the end and on failure; errno tells them apart.
        Glibc.errno = 0
        guard let entry = readdir(stream) else {
            let code = Errno(rawValue: Glibc.errno)
            if code.rawValue == 0 { return names }
            if ErrnoClass(code) == .programmingError { programmingError("readdir", code) }
            throw SystemError("readdir", subject: path, errno: code)
        }
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
}

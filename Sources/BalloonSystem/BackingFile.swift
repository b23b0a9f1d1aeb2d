// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc
import SystemPackage

/// A guest's RAM backend seen from the host: a regular file (QEMU
/// `-object memory-backend-file,mem-path=/dev/shm/…,share=on`) that can have
/// holes punched in it to give the memory behind freed guest frames back.
public final class BackingFile {
    package let path: String
    package let descriptor: Descriptor

    /// Opens `path` read-write (the file must exist; it is never created or truncated).
    package init(path: String) throws(SystemError) {
        self.path = path
        descriptor = try Descriptor.open(path, flags: O_RDWR)
    }

    /// Adopts an already open descriptor (a memfd, tests).
    package init(descriptor: Descriptor, path: String) {
        self.path = path
        self.descriptor = descriptor
    }

    package struct Status: Sendable, Equatable {
        /// st_size in bytes.
        package var size: UInt64
        /// st_blocks: 512-byte units actually allocated.
        package var blocks: UInt64
        /// Whether it is a regular file.
        package var isRegular: Bool
        /// Device (major, minor) and inode, as /proc/PID/maps shows them.
        package var deviceMajor: UInt32 = 0
        package var deviceMinor: UInt32 = 0
        package var inode: UInt64 = 0
        package var allocatedBytes: UInt64 { blocks * 512 }
    }

    package func status() throws(SystemError) -> Status {
        let st = try descriptor.status(subject: path)
        return Status(size: st.size, blocks: st.blocks, isRegular: st.kind == .regular,
                      deviceMajor: st.deviceMajor, deviceMinor: st.deviceMinor, inode: st.inode)
    }

    /// Whether `path` still names this open file: false once it was removed,
    /// renamed or replaced, though the descriptor keeps working (as QEMU's).
    package func pathNamesFile() -> Bool {
        var byPath = stat(), held = stat()
        guard (try? syscall("stat", subject: path, { stat(path, &byPath) })) != nil,
              (try? syscall("fstat", subject: path, { fstat(descriptor.raw, &held) })) != nil else { return false }
        return held.st_nlink > 0 && byPath.st_dev == held.st_dev && byPath.st_ino == held.st_ino
    }

    /// `fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, offset, length)`:
    /// frees the blocks, the size stays, the range reads back as zeros.
    package func punchHole(offset: UInt64, length: UInt64) throws(SystemError) {
        try fallocate("fallocate(PUNCH_HOLE)", cballoon_FALLOC_FL_PUNCH_HOLE | cballoon_FALLOC_FL_KEEP_SIZE, offset, length)
    }

    /// `fallocate(FALLOC_FL_KEEP_SIZE, offset, length)`: allocates the blocks
    /// of the range's holes (zeroed pages on tmpfs and hugetlbfs); data that
    /// is there stays, and the size never changes.
    package func allocate(offset: UInt64, length: UInt64) throws(SystemError) {
        try fallocate("fallocate(KEEP_SIZE)", cballoon_FALLOC_FL_KEEP_SIZE, offset, length)
    }

    private func fallocate(_ operation: String, _ mode: Int32, _ offset: UInt64, _ length: UInt64) throws(SystemError) {
        guard length > 0 else { return }
        guard offset <= UInt64(Int64.max), length <= UInt64(Int64.max) - offset else {
            throw SystemError(operation, subject: "\(path) offset \(offset) length \(length)", cause: .outOfRange)
        }
        _ = try syscall(operation, subject: "\(path) offset \(offset) length \(length)") {
            cballoon_fallocate(descriptor.raw, mode, Int64(offset), Int64(length))
        }
    }
}



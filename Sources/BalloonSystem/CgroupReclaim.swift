// SPDX-License-Identifier: Apache-2.0
import Glibc

/// cgroup v2 proactive reclaim (Linux ≥ 5.19): writing a byte count to a
/// cgroup's `memory.reclaim` makes the kernel reclaim that much from the
/// cgroup's LRU lists, coldest first, as kswapd would. The root cgroup's file
/// reclaims from the whole guest.
package final class CgroupReclaim {
    /// The root cgroup's file where cgroup v2 is mounted as systemd mounts it.
    package static let rootPath = "/sys/fs/cgroup/memory.reclaim"

    package let path: String
    private let fd: Descriptor

    /// Opens the file; ENOENT means no cgroup v2 at `path`'s mount or a kernel
    /// without `memory.reclaim`.
    package init(path: String = CgroupReclaim.rootPath) throws(SystemError) {
        self.path = path
        fd = try Descriptor.open(path, flags: O_WRONLY)
    }

    /// What one request achieved.
    package enum Outcome: Sendable, Equatable {
        /// The kernel reclaimed all of it.
        case reclaimed
        /// The kernel could not reclaim that much (EAGAIN): nothing cold is left.
        case short
    }

    /// Asks the kernel to reclaim `bytes` (it may take a while: the write
    /// returns when the reclaim is done).
    package func reclaim(_ bytes: UInt64) throws(SystemError) -> Outcome {
        let text = Array(String(bytes).utf8)
        // The kernel answers EAGAIN (nil here) when it could not reclaim that much.
        let result = text.withUnsafeBytes { buffer in Result { () throws(SystemError) in try fd.write(buffer) } }
        switch result {
        case let .success(written): return written == nil ? .short : .reclaimed
        case let .failure(error): throw SystemError("write", subject: path, cause: error.cause)
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
import Glibc

/// An inotify instance (non-blocking, close-on-exec) watching directories
/// for entries that appear and go: balloon-hostd's guest discovery.
package final class Inotify {
    package let descriptor: Descriptor
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 8)

    /// What a watch reports: entries created, deleted or moved in or out,
    /// and the watched directory itself going away.
    package static let entryChanges: UInt32 = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

    package struct Event: Sendable, Equatable {
        package var watch: Int32
        package var mask: UInt32
        /// The entry's name; empty for an event about the directory itself.
        package var name: String
        /// The kernel dropped events: the caller must rescan.
        package var overflowed: Bool { mask & UInt32(IN_Q_OVERFLOW) != 0 }
        /// The watch ended (its directory was removed or unmounted).
        package var watchEnded: Bool { mask & UInt32(IN_IGNORED) != 0 }
    }

    package init() throws(SystemError) {
        descriptor = Descriptor(adopting: try syscall("inotify_init1") { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) })
    }

    deinit {
        buffer.deallocate()
        descriptor.close()
    }

    /// Watches `directory` for entry changes; returns the watch number.
    package func watch(_ directory: String, mask: UInt32 = Inotify.entryChanges) throws(SystemError) -> Int32 {
        try syscall("inotify_add_watch", subject: directory) { inotify_add_watch(descriptor.raw, directory, mask) }
    }

    /// Ends a watch; one the kernel already ended is not an error.
    package func unwatch(_ watch: Int32) {
        bestEffortSyscall("inotify_rm_watch", tolerating: [.invalidArgument]) { inotify_rm_watch(descriptor.raw, watch) }
    }

    /// The events queued now (none if nothing is pending).
    package func read() throws(SystemError) -> [Event] {
        var events: [Event] = []
        while let n = try nonBlockingSyscall("read", subject: "inotify", { Glibc.read(descriptor.raw, buffer.baseAddress, buffer.count) }), n > 0 {
            var offset = 0
            // struct inotify_event: int wd; uint32 mask, cookie, len; char name[len].
            while offset + 16 <= n {
                let wd = buffer.load(fromByteOffset: offset, as: Int32.self)
                let mask = buffer.load(fromByteOffset: offset + 4, as: UInt32.self)
                let length = Int(buffer.load(fromByteOffset: offset + 12, as: UInt32.self))
                let nameBytes = UnsafeRawBufferPointer(rebasing: buffer[(offset + 16)..<min(offset + 16 + length, n)])
                let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
                events.append(Event(watch: wd, mask: mask, name: name))
                offset += 16 + length
            }
        }
        return events
    }
}

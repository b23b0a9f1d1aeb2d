// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc

/// What a region asks of transparent huge pages.
public enum HugePageAdvice: String, Sendable {
    /// MADV_HUGEPAGE: huge pages, even at the cost of compaction.
    case advise
    /// MADV_NOHUGEPAGE: base pages only.
    case forbid
    /// No advice: the system setting decides (still 2 MiB aligned).
    case leave

    /// The `advice` argument of `cballoon_map_locked` and of a holder's `lock` line.
    var shimCode: Int32 {
        switch self { case .advise: 1; case .forbid: 0; case .leave: 2 }
    }
}

/// Anonymous memory that is mapped, populated and mlocked: one chunk of the
/// balloon. Released with munlock + munmap (deflate), or shrunk from its tail.
package final class LockedRegion {
    package static let hugePageSize = 2 << 20

    package let base: UnsafeMutableRawPointer
    package private(set) var length: Int
    private var released = false

    /// Maps `length` bytes (a page multiple), advises THP as asked, keeps the
    /// region out of forked children and core dumps, optionally touches every page, and
    /// locks it. mlock populates the pages itself (write faults for a private
    /// writable mapping), so touching first is optional work.
    package convenience init(length: Int, hugePages: Bool, touch: Bool = false) throws(SystemError) {
        try self.init(length: length, advice: hugePages ? .advise : .forbid, touch: touch)
    }

    package init(length: Int, advice: HugePageAdvice, touch: Bool = false) throws(SystemError) {
        precondition(length > 0 && length % PageSize.bytes == 0, "region length must be a page multiple")
        // The same routine as a holder process's (cballoon_map_locked), plus
        // MADV_DONTFORK: the daemon forks holders, which must not inherit this.
        var mapped: UnsafeMutableRawPointer?
        var failed: UnsafePointer<CChar>?
        _ = try syscall(failed.map { String(cString: $0) } ?? "mmap", subject: "\(length) bytes") {
            cballoon_map_locked(length, advice.shimCode, 1, touch ? 1 : 0, &mapped, &failed)
        }
        self.base = mapped!
        self.length = length
    }

    /// Adopts an already locked mapping (a tail split off another region).
    private init(adopting base: UnsafeMutableRawPointer, length: Int) {
        self.base = base
        self.length = length
    }

    deinit { release() }

    /// Splits off the tail from `newLength` on as a region of its own, still
    /// locked, so it can be released later than the rest (no syscall).
    package func detachTail(at newLength: Int) -> LockedRegion? {
        precondition(newLength >= 0 && newLength <= length && newLength % PageSize.bytes == 0)
        guard !released, newLength < length else { return nil }
        let tail = LockedRegion(adopting: base + newLength, length: length - newLength)
        length = newLength
        if newLength == 0 { released = true }
        return tail
    }

    /// Gives the tail back so the region is `newLength` bytes (a page multiple).
    package func shrink(to newLength: Int) {
        precondition(newLength >= 0 && newLength <= length && newLength % PageSize.bytes == 0)
        guard !released, newLength < length else { return }
        Self.unmap(base + newLength, length - newLength)
        length = newLength
        if newLength == 0 { released = true }
    }

    /// munlock + munmap; the pages go back to the guest's free memory.
    package func release() {
        guard !released else { return }
        released = true
        Self.unmap(base, length)
    }

    /// munlock + munmap of a range this region owns: they fail only for a
    /// range that was never mapped, which the funnel treats as a bug.
    private static func unmap(_ start: UnsafeMutableRawPointer, _ count: Int) {
        bestEffortSyscall("munlock") { munlock(start, count) }
        bestEffortSyscall("munmap") { munmap(start, count) }
    }
}

/// Facts about this process from /proc/self/status (VmLck, VmRSS).
package enum ProcessStatus {
    /// The value of a `Key:   123 kB` line, in bytes.
    package static func value(_ key: String, pid: String = "self") -> UInt64? {
        guard let bytes = try? readWholeFile("/proc/\(pid)/status") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            let digits = line.dropFirst(key.count + 1).filter { $0.isNumber }
            return UInt64(digits).map { $0 * 1024 }
        }
        return nil
    }
}

/// The system's THP mode from /sys/kernel/mm/transparent_hugepage/enabled
/// (`always`, `madvise` or `never`; nil without THP).
package func systemHugePageMode(path: String = "/sys/kernel/mm/transparent_hugepage/enabled") -> String? {
    guard let bytes = try? readWholeFile(path) else { return nil }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let open = text.firstIndex(of: "["), let close = text[open...].firstIndex(of: "]") else { return nil }
    return String(text[text.index(after: open)..<close])
}

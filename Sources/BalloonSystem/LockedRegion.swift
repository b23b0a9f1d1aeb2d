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
}

/// Anonymous memory that is mapped, populated and mlocked: one chunk of the
/// balloon. Released with munlock + munmap (deflate), or shrunk from its tail.
public final class LockedRegion {
    public static let hugePageSize = 2 << 20

    public let base: UnsafeMutableRawPointer
    public private(set) var length: Int
    private var released = false

    /// Maps `length` bytes (a page multiple), advises THP as asked, keeps the
    /// region out of forked children and core dumps, optionally touches every page, and
    /// locks it. mlock populates the pages itself (write faults for a private
    /// writable mapping), so touching first is optional work.
    public convenience init(length: Int, hugePages: Bool, touch: Bool = false) throws(SystemError) {
        try self.init(length: length, advice: hugePages ? .advise : .forbid, touch: touch)
    }

    public init(length: Int, advice: HugePageAdvice, touch: Bool = false) throws(SystemError) {
        precondition(length > 0 && length % PageSize.bytes == 0, "region length must be a page multiple")
        let base = try Self.map(length: length, alignTo: advice == .forbid ? PageSize.bytes : Self.hugePageSize)
        self.base = base
        self.length = length
        do {
            // THP may be disabled system-wide (EINVAL): not fatal, just slower.
            switch advice {
            case .advise: _ = madvise(base, length, cballoon_MADV_HUGEPAGE)
            case .forbid: _ = madvise(base, length, cballoon_MADV_NOHUGEPAGE)
            case .leave: break
            }
            _ = try syscall("madvise(MADV_DONTFORK)") { madvise(base, length, cballoon_MADV_DONTFORK) }
            // A core dump (the watchdog's SIGABRT) must not write the balloon out.
            _ = madvise(base, length, cballoon_MADV_DONTDUMP)
            if touch {
                let step = PageSize.bytes
                var offset = 0
                while offset < length { base.storeBytes(of: 1, toByteOffset: offset, as: UInt8.self); offset += step }
            }
            _ = try syscall("mlock", subject: "\(length) bytes") { mlock(base, length) }
        } catch {
            munmap(base, length)
            released = true
            throw error
        }
    }

    /// Adopts an already locked mapping (a tail split off another region).
    private init(adopting base: UnsafeMutableRawPointer, length: Int) {
        self.base = base
        self.length = length
    }

    deinit { release() }

    /// Splits off the tail from `newLength` on as a region of its own, still
    /// locked, so it can be released later than the rest (no syscall).
    public func detachTail(at newLength: Int) -> LockedRegion? {
        precondition(newLength >= 0 && newLength <= length && newLength % PageSize.bytes == 0)
        guard !released, newLength < length else { return nil }
        let tail = LockedRegion(adopting: base + newLength, length: length - newLength)
        length = newLength
        if newLength == 0 { released = true }
        return tail
    }

    /// Gives the tail back so the region is `newLength` bytes (a page multiple).
    public func shrink(to newLength: Int) {
        precondition(newLength >= 0 && newLength <= length && newLength % PageSize.bytes == 0)
        guard !released, newLength < length else { return }
        let tail = base + newLength
        munlock(tail, length - newLength)
        munmap(tail, length - newLength)
        length = newLength
        if newLength == 0 { released = true }
    }

    /// munlock + munmap; the pages go back to the guest's free memory.
    public func release() {
        guard !released else { return }
        released = true
        munlock(base, length)
        munmap(base, length)
    }

    private static func map(length: Int, alignTo alignment: Int) throws(SystemError) -> UnsafeMutableRawPointer {
        // Over-map and trim so huge pages can back the whole region.
        let span = alignment > PageSize.bytes ? length + alignment : length
        let raw = mmap(nil, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let raw, raw != MAP_FAILED else {
            throw SystemError("mmap", subject: "\(length) bytes", errno: .init(rawValue: errno))
        }
        guard span != length else { return raw }
        let address = UInt(bitPattern: raw)
        let aligned = (address + UInt(alignment) - 1) & ~(UInt(alignment) - 1)
        let head = Int(aligned - address)
        if head > 0 { munmap(raw, head) }
        let tail = span - head - length
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(length)), tail) }
        return UnsafeMutableRawPointer(bitPattern: aligned)!
    }
}

/// Facts about this process from /proc/self/status (VmLck, VmRSS).
public enum ProcessStatus {
    /// The value of a `Key:   123 kB` line, in bytes.
    public static func value(_ key: String, pid: String = "self") -> UInt64? {
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
public func systemHugePageMode(path: String = "/sys/kernel/mm/transparent_hugepage/enabled") -> String? {
    guard let bytes = try? readWholeFile(path) else { return nil }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let open = text.firstIndex(of: "["), let close = text[open...].firstIndex(of: "]") else { return nil }
    return String(text[text.index(after: open)..<close])
}

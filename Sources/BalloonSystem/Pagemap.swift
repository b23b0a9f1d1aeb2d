import Glibc

/// /proc/self/pagemap: one 64-bit entry per virtual page; bit 63 = present,
/// bits 0–54 = the frame number, which reads as 0 without CAP_SYS_ADMIN.
public final class Pagemap {
    private let descriptor: Descriptor
    private let pageSize = PageSize.bytes

    public init(path: String = "/proc/self/pagemap") throws(SystemError) {
        descriptor = try Descriptor.open(path, flags: O_RDONLY)
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case system(SystemError)
        /// Present pages with frame number 0: the kernel hides frames.
        case framesHidden
        public var description: String {
            switch self {
            case let .system(e): "\(e)"
            case .framesHidden: "/proc/self/pagemap shows no frame numbers (needs CAP_SYS_ADMIN)"
            }
        }
    }

    /// Frame numbers of `pages` pages from `address` (nil for a page not present).
    public func frames(at address: UnsafeRawPointer, pages: Int) throws(Failure) -> [UInt64?] {
        try frames(at: UInt(bitPattern: address), pages: pages)
    }

    /// The same for an address in the process whose pagemap this is.
    public func frames(at address: UInt, pages: Int) throws(Failure) -> [UInt64?] {
        var entries = [UInt64](repeating: 0, count: pages)
        let offset = Int(address / UInt(pageSize)) * 8
        let wanted = pages * 8
        var done = 0
        while done < wanted {
            let n: Int
            do {
                n = try syscall("pread", subject: "/proc/self/pagemap") {
                    entries.withUnsafeMutableBytes { Glibc.pread(descriptor.raw, $0.baseAddress! + done, wanted - done, off_t(offset + done)) }
                }
            } catch {
                throw .system(error)
            }
            if n == 0 { break }
            done += n
        }
        var out: [UInt64?] = []
        out.reserveCapacity(pages)
        var hidden = false
        for entry in entries {
            guard entry & (1 << 63) != 0 else { out.append(nil); continue }
            let pfn = entry & ((1 << 55) - 1)
            if pfn == 0 { hidden = true }
            out.append(pfn)
        }
        if hidden { throw .framesHidden }
        return out
    }
}

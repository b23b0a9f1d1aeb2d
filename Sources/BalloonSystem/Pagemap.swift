// SPDX-License-Identifier: Apache-2.0
import Glibc

/// /proc/self/pagemap: one 64-bit entry per virtual page; bit 63 = present,
/// bits 0–54 = the frame number, which reads as 0 without CAP_SYS_ADMIN.
package final class Pagemap {
    private let descriptor: Descriptor
    private let path: String
    private let pageSize = PageSize.bytes

    package init(path: String = "/proc/self/pagemap") throws(SystemError) {
        descriptor = try Descriptor.open(path, flags: O_RDONLY)
        self.path = path
    }

    package enum Failure: Error, Equatable, CustomStringConvertible {
        case system(SystemError)
        /// Present pages with frame number 0: the kernel hides frames.
        case framesHidden
        package var description: String {
            switch self {
            case let .system(e): "\(e)"
            case .framesHidden: "/proc/self/pagemap shows no frame numbers (needs CAP_SYS_ADMIN)"
            }
        }
    }

    /// Frame numbers of `pages` pages from `address` (nil for a page not present).
    package func frames(at address: UnsafeRawPointer, pages: Int) throws(Failure) -> [UInt64?] {
        try frames(at: UInt(bitPattern: address), pages: pages)
    }

    /// The same for an address in the process whose pagemap this is.
    package func frames(at address: UInt, pages: Int) throws(Failure) -> [UInt64?] {
        var out: [UInt64?] = Array(repeating: nil, count: pages)
        try forEachRun(at: address, pages: pages) { offset, pfn, count in
            for i in 0..<count { out[offset + i] = pfn + UInt64(i) }
        }
        return out
    }

    /// Calls `body` for each run of present pages from `address` whose
    /// frames are consecutive too (pages [offset, offset+count) are frames
    /// [pfn, pfn+count)), in page order, in one pass over the raw entries (a
    /// 64 MiB chunk of 4 KiB pages is 16,384 entries: this is on the
    /// inflation path).
    package func forEachRun(at address: UInt, pages: Int, _ body: (_ pageOffset: Int, _ pfn: UInt64, _ count: Int) -> Void) throws(Failure) {
        var entries = [UInt64](repeating: 0, count: pages)
        let offset = Int(address / UInt(pageSize)) * 8
        let wanted = pages * 8
        var done = 0
        while done < wanted {
            let n: Int
            do {
                n = try syscall("pread", subject: path) {
                    entries.withUnsafeMutableBytes { Glibc.pread(descriptor.raw, $0.baseAddress! + done, wanted - done, off_t(offset + done)) }
                }
            } catch {
                throw .system(error)
            }
            if n == 0 { break }
            done += n
        }
        let read = done / 8
        var hidden = false
        entries.withUnsafeBufferPointer { raw in
            var page = 0
            while page < read {
                let entry = raw[page]
                guard entry & (1 << 63) != 0 else { page += 1; continue }
                let pfn = entry & ((1 << 55) - 1)
                if pfn == 0 { hidden = true; return }
                var end = page + 1
                while end < read, raw[end] & (1 << 63) != 0, raw[end] & ((1 << 55) - 1) == pfn + UInt64(end - page) { end += 1 }
                body(page, pfn, end - page)
                page = end
            }
        }
        if hidden { throw .framesHidden }
    }
}

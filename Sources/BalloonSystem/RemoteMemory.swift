// SPDX-License-Identifier: Apache-2.0
import CBalloonShim

/// Another process's memory, read from outside with `process_vm_readv`.
package enum RemoteMemory {
    /// Reads one byte of each page of `[address, address + length)` in
    /// process `pid`. The kernel faults every page it reads into that
    /// process's page tables (allocating and zeroing a shared file page not
    /// used yet), so the process's own later touch takes no page fault. Reading
    /// changes no data. Returns the bytes of the range covered, less than
    /// `length` when the range runs into memory the process no longer maps.
    /// Needs ptrace read access to the process (same user, or CAP_SYS_PTRACE).
    package static func touch(pid: Int32, address: UInt64, length: UInt64) throws(SystemError) -> UInt64 {
        guard length > 0 else { return 0 }
        let page = UInt64(PageSize.bytes)
        let first = address / page * page
        guard address <= UInt64.max - length else {
            throw SystemError("process_vm_readv", subject: "pid \(pid) address \(address) length \(length)", cause: .outOfRange)
        }
        let pages = (address + length - first + page - 1) / page
        let done = try syscall("process_vm_readv", subject: "pid \(pid)") {
            cballoon_touch_remote_pages(pid, first, pages, page)
        }
        let covered = UInt64(done) * page, skipped = address - first
        return covered > skipped ? min(length, covered - skipped) : 0
    }
}

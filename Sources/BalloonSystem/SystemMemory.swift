// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc

/// The kernel's memory counters without /proc text: sysinfo(2).
public enum SystemMemory {
    /// Free memory in bytes: `freeram` × `mem_unit`, the kernel's
    /// NR_FREE_PAGES, which /proc/meminfo prints as MemFree. One syscall with
    /// nothing to format or parse, where a /proc/meminfo read makes the
    /// kernel print some fifty lines: the free-memory mode samples it four
    /// times a second, idle or not.
    public static func freeBytes() throws(SystemError) -> UInt64 {
        var info = CBalloonShim.sysinfo()
        _ = try syscall("sysinfo") { cballoon_sysinfo(&info) }
        return UInt64(info.freeram) * UInt64(max(info.mem_unit, 1))
    }
}

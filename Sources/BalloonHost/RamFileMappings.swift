// SPDX-License-Identifier: Apache-2.0
import BalloonSystem

/// A shared, writable mapping of the guest's RAM file in some process on
/// the host: QEMU's view of guest RAM (`Prefaulter`).
package struct RamFileMapping: Sendable, Equatable {
    package var pid: Int32
    /// Virtual addresses [start, end) in that process.
    package var start: UInt64
    package var end: UInt64
    /// The file offset mapped at `start`.
    package var fileOffset: UInt64

    package init(pid: Int32, start: UInt64, end: UInt64, fileOffset: UInt64) {
        self.pid = pid
        self.start = start
        self.end = end
        self.fileOffset = fileOffset
    }

    /// The part of `range` this mapping covers, as (address, length) in the
    /// process; nil if none.
    package func addresses(of range: RamMap.FileRange) -> (address: UInt64, length: UInt64)? {
        let mapEnd = fileOffset + (end - start)
        let lo = max(range.offset, fileOffset), hi = min(range.end, mapEnd)
        guard lo < hi else { return nil }
        return (start + (lo - fileOffset), hi - lo)
    }
}

/// Finds the processes that map a file, from /proc/PID/maps.
package enum RamFileMappings {
    /// The shared, writable mappings (`rw?s`) of the file (device
    /// major:minor, inode) in one process's maps text. Lines that do not
    /// parse are skipped: the text is the kernel's, but a process may exit
    /// while it is read.
    package static func parse(_ text: String, pid: Int32, deviceMajor: UInt32, deviceMinor: UInt32, inode: UInt64) -> [RamFileMapping] {
        var out: [RamFileMapping] = []
        let inodeText = String(inode)
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            // start-end perms offset major:minor inode [path]
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count >= 5, fields[4] == inodeText else { continue }
            let perms = Array(fields[1].utf8)
            guard perms.count == 4, perms[0] == UInt8(ascii: "r"), perms[1] == UInt8(ascii: "w"), perms[3] == UInt8(ascii: "s") else { continue }
            let dev = fields[3].split(separator: ":")
            guard dev.count == 2, UInt32(dev[0], radix: 16) == deviceMajor, UInt32(dev[1], radix: 16) == deviceMinor else { continue }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt64(bounds[0], radix: 16), let end = UInt64(bounds[1], radix: 16), start < end,
                  let offset = UInt64(fields[2], radix: 16), offset <= UInt64.max - (end - start) else { continue }
            out.append(RamFileMapping(pid: pid, start: start, end: end, fileOffset: offset))
        }
        return out
    }

    /// Every other process's mappings of the file. Processes that exit or
    /// whose maps this process may not read are skipped.
    package static func find(deviceMajor: UInt32, deviceMinor: UInt32, inode: UInt64, proc: String = "/proc",
                             excluding ownPid: Int32 = ProcessControl.currentPid) -> [RamFileMapping] {
        guard let entries = try? directoryEntries(proc) else { return [] }
        var out: [RamFileMapping] = []
        for name in entries {
            guard let pid = Int32(name), pid > 0, pid != ownPid,
                  let bytes = try? readWholeFile("\(proc)/\(name)/maps") else { continue }
            out += parse(String(decoding: bytes, as: UTF8.self), pid: pid, deviceMajor: deviceMajor, deviceMinor: deviceMinor, inode: inode)
        }
        return out
    }
}

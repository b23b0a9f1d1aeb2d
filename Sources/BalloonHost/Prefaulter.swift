// SPDX-License-Identifier: Apache-2.0
import BalloonSystem

/// Maps memory the guest took back into the page tables of the process that
/// runs the guest (QEMU), after `BackendPuncher.populate` allocated it.
///
/// Why: after the `fallocate`, the guest's first touch of each 4 KiB page is
/// still a fault in QEMU's vCPU thread, which zeroes the page and maps it;
/// that was most of what was left of bench-free's W3 slowdown. Reading a byte
/// a page from QEMU's mapping (`RemoteMemory.touch`) does that work in the
/// host's loop instead, ahead of the guest (free-memory.md, "What taking
/// memory back costs"). It reads, so it never changes the guest's data.
///
/// The mappings are found by the RAM file's device and inode in
/// /proc/PID/maps: at first use, and again after a read fails or finds the
/// mapping gone, at most once per `rescanInterval`.
package final class Prefaulter {
    package static let rescanInterval: Duration = .seconds(30)

    private let find: () -> [RamFileMapping]
    private var mappings: [RamFileMapping] = []
    private var lastScan: Duration?
    package private(set) var bytesPrefaulted: UInt64 = 0
    package private(set) var failures: UInt64 = 0
    /// The kernel refused to read the process (no ptrace access to it): no
    /// more tries, as for a file system that cannot allocate.
    package private(set) var denied = false

    package enum Outcome: Equatable {
        /// Bytes mapped (in every process that maps the range).
        case mapped(UInt64)
        /// No process maps the file (yet): nothing to do.
        case noMapping
        /// A read failed (no ptrace access: `denied`; the process exited).
        case failed(SystemError)
        /// Not tried: an earlier read was denied.
        case off
    }

    /// `find` lists the processes' mappings of the RAM file (tests give their own).
    package init(find: @escaping () -> [RamFileMapping]) {
        self.find = find
    }

    /// For the RAM file `status` describes, found in /proc.
    package convenience init(file status: BackingFile.Status) {
        self.init {
            RamFileMappings.find(deviceMajor: status.deviceMajor, deviceMinor: status.deviceMinor, inode: status.inode)
        }
    }

    /// Maps `range` of the RAM file into each process that maps it.
    package func prefault(_ range: RamMap.FileRange, now: Duration) -> Outcome {
        guard !denied else { return .off }
        if mappings.isEmpty, lastScan.map({ now - $0 >= Self.rescanInterval }) ?? true {
            lastScan = now
            mappings = find()
        }
        guard !mappings.isEmpty else { return .noMapping }
        var mapped: UInt64 = 0
        var error: SystemError?
        var stale = false
        for mapping in mappings {
            guard let target = mapping.addresses(of: range) else { continue }
            do throws(SystemError) {
                let done = try RemoteMemory.touch(pid: mapping.pid, address: target.address, length: target.length)
                mapped += done
                if done < target.length { stale = true }
            } catch let e {
                error = e
                stale = true
            }
        }
        // The process unmapped the file or exited: look again (not at once).
        if stale { mappings = [] }
        bytesPrefaulted += mapped
        if let error {
            failures += 1
            denied = error.isDenied
            return .failed(error)
        }
        return .mapped(mapped)
    }
}

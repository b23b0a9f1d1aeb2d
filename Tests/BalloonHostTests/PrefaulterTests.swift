// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonSystem
import BalloonTestSupport
import Glibc
import Testing

private let MiB: UInt64 = 1 << 20

/// Finding QEMU's mapping of a guest's RAM file, and mapping memory the guest
/// took back into it ahead of the guest (Prefaulter.swift).
@Suite struct PrefaulterTests {
    @Test func theRamFileIsFoundInARealQEMUsMaps() throws {
        // QEMU 7.2 (TCG) of bench-host, its RAM in /dev/shm (device 00:1b, inode 722).
        let text = try RepoFiles.text(RepoFiles.procFixtures + "/linux-6.18-local/qemu-maps")
        #expect(RamFileMappings.parse(text, pid: 12177, deviceMajor: 0, deviceMinor: 0x1b, inode: 722)
            == [RamFileMapping(pid: 12177, start: 0x7fa7_2fe0_0000, end: 0x7fa7_6fe0_0000, fileOffset: 0)])
        // The same inode on another device is another file.
        #expect(RamFileMappings.parse(text, pid: 12177, deviceMajor: 0, deviceMinor: 0x1c, inode: 722).isEmpty)
        // QEMU's executable is mapped private (r--p, r-xp): never a RAM mapping.
        #expect(RamFileMappings.parse(text, pid: 12177, deviceMajor: 0xfe, deviceMinor: 0, inode: 16_236_686).isEmpty)
        // Torn or foreign lines are skipped, not trusted; a line without a path still counts.
        let lines = "7fa72fe00000-7fa76fe rw-s 0000 00:1b 722 /dev/shm/x\nzz-yy rw-s 0 00:1b 722\nrw-s 0 00:1b 722\n1000-3000 rw-s 00002000 00:1b 722\n"
        #expect(RamFileMappings.parse(lines, pid: 1, deviceMajor: 0, deviceMinor: 0x1b, inode: 722)
            == [RamFileMapping(pid: 1, start: 0x1000, end: 0x3000, fileOffset: 0x2000)])
    }

    @Test func aFileRangeBecomesTheAddressesTheMappingCovers() {
        // A pc machine's RAM above 4 GiB: file offset 3 GiB mapped at 0x7000_0000_0000, 1 GiB long.
        let m = RamFileMapping(pid: 7, start: 0x7000_0000_0000, end: 0x7000_4000_0000, fileOffset: 3 << 30)
        #expect(m.addresses(of: .init(offset: (3 << 30) + 4096, length: 8192))! == (0x7000_0000_1000, 8192))
        // Clipped at both ends.
        #expect(m.addresses(of: .init(offset: (3 << 30) - 4096, length: 3 * 4096))! == (0x7000_0000_0000, 2 * 4096))
        #expect(m.addresses(of: .init(offset: (4 << 30) - 4096, length: 3 * 4096))! == (0x7000_3fff_f000, 4096))
        #expect(m.addresses(of: .init(offset: 0, length: 3 << 30)) == nil)
        #expect(m.addresses(of: .init(offset: 4 << 30, length: 4096)) == nil)
    }

    @Test func prefaultMapsTheRangeInTheProcessThatMapsTheFileAndNothingElse() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let size = 16 * MiB
        let ram = ShmFile(size: Int(size), fill: 0xA5)
        defer { ram.remove() }
        let path = ram.path
        let qemu = try #require(RamMapper(path, in: dir))
        defer { qemu.stop() }
        let base = qemu.base

        let file = try BackendPuncher(path: path)
        let status = try file.file.status()
        let found = RamFileMappings.find(deviceMajor: status.deviceMajor, deviceMinor: status.deviceMinor, inode: status.inode)
        #expect(found == [RamFileMapping(pid: qemu.process.pid, start: base, end: base + size, fileOffset: 0)])
        #expect(try qemu.present(0, size).allSatisfy { !$0 })

        // The guest took back [2 MiB, 6 MiB): allocated, then mapped in the mapper.
        let range = RamMap.FileRange(offset: 2 * MiB, length: 4 * MiB)
        #expect(file.punch([range]) == [true])
        #expect(file.populate(range))
        let prefaulter = Prefaulter(file: status)
        #expect(prefaulter.prefault(range, now: .zero) == .mapped(4 * MiB))
        #expect(prefaulter.bytesPrefaulted == 4 * MiB)
        #expect(try qemu.present(2 * MiB, 4 * MiB).allSatisfy { $0 })
        // The kernel's fault-around may map a few neighbours already in the
        // page cache (up to 64 KiB, `fault_around_bytes`); nothing further.
        let around: UInt64 = 64 << 10
        #expect(try qemu.present(0, 2 * MiB - around).allSatisfy { !$0 })
        #expect(try qemu.present(6 * MiB + around, 10 * MiB - around).allSatisfy { !$0 })
        // Reading changed no data: the punched range reads as zeros, the rest as before.
        #expect(ram.isFilled(2 * MiB, Int(4 * MiB), with: 0))
        #expect(ram.isFilled(0, Int(2 * MiB), with: 0xA5) && ram.isFilled(6 * MiB, Int(10 * MiB), with: 0xA5))
    }

    @Test func noMappingIsReportedAndLookedForAgainOnlyAfterTheRescanInterval() {
        var scans = 0
        let prefaulter = Prefaulter { scans += 1; return [] }
        let range = RamMap.FileRange(offset: 0, length: MiB)
        #expect(prefaulter.prefault(range, now: .zero) == .noMapping)
        #expect(prefaulter.prefault(range, now: .seconds(29)) == .noMapping)
        #expect(scans == 1)
        #expect(prefaulter.prefault(range, now: Prefaulter.rescanInterval) == .noMapping)
        #expect(scans == 2)
    }

    @Test func aProcessThatIsGoneIsAFailureThenLookedForAgain() {
        var scans = 0
        // A pid that cannot exist (above pid_max's ceiling of 2^22).
        let gone = RamFileMapping(pid: 1 << 23, start: 0x7000_0000_0000, end: 0x7000_0100_0000, fileOffset: 0)
        let prefaulter = Prefaulter { scans += 1; return [gone] }
        let range = RamMap.FileRange(offset: 0, length: MiB)
        guard case let .failed(error) = prefaulter.prefault(range, now: .zero) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.errnoCode == ESRCH)
        #expect(prefaulter.failures == 1 && prefaulter.bytesPrefaulted == 0)
        // Forgotten: the next slice looks again once the interval has passed.
        #expect(prefaulter.prefault(range, now: .seconds(1)) == .noMapping)
        #expect(scans == 1)
        _ = prefaulter.prefault(range, now: Prefaulter.rescanInterval)
        #expect(scans == 2)
    }

    @Test func aMappingThatIsGoneFromALiveProcessMapsNothingAndIsLookedForAgain() {
        var scans = 0
        // Page 1 of this process: never mapped (EFAULT from the kernel, a short count here).
        let unmapped = RamFileMapping(pid: getpid(), start: 0x1000, end: 0x10_1000, fileOffset: 0)
        let prefaulter = Prefaulter { scans += 1; return [unmapped] }
        let range = RamMap.FileRange(offset: 0, length: MiB)
        #expect(prefaulter.prefault(range, now: .zero) == .mapped(0))
        #expect(prefaulter.failures == 0)
        #expect(prefaulter.prefault(range, now: .seconds(1)) == .noMapping)
        #expect(scans == 1)
    }
}

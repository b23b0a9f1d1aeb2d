// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import Glibc
import Testing

/// Real mlock (this machine grants CAP_IPC_LOCK). VmLck is this process's
/// locked total, so these tests must not overlap: `.serialized`, and no other
/// test in this target locks memory. At most 64 MiB is locked at a time.
@Suite("LockedRegion", .serialized)
struct LockedRegionTests {
    static let size = 64 * MiB

    func vmLck() throws -> UInt64 { try #require(ProcessStatus.value("VmLck")) }

    @Test(arguments: [false, true])
    func lockingRaisesVmLckAndMlockedByTheRegionSize(hugePages: Bool) throws {
        let baseline = try vmLck()
        let mlockedBefore = try meminfo("Mlocked")
        let region = try LockedRegion(length: Self.size, hugePages: hugePages)
        let mlockedAfter = try meminfo("Mlocked")
        #expect(region.length == Self.size)
        #expect(try vmLck() == baseline + UInt64(Self.size), "VmLck rises by exactly the region")
        let delta = Int64(mlockedAfter) - Int64(mlockedBefore)
        #expect(abs(delta - Int64(Self.size)) <= Int64(2 * MiB),
                "Mlocked rose by \(delta) bytes (other processes may lock too)")
        region.release()
        #expect(try vmLck() == baseline)
    }

    @Test(arguments: [false, true])
    func shrinkLowersVmLckExactly(hugePages: Bool) throws {
        let baseline = try vmLck()
        let region = try LockedRegion(length: Self.size, hugePages: hugePages)
        region.shrink(to: 16 * MiB)
        #expect(region.length == 16 * MiB)
        #expect(try vmLck() == baseline + UInt64(16 * MiB))
        // Not on a huge-page boundary: the kernel splits, the count stays exact.
        region.shrink(to: 5 * MiB + PageSize.bytes)
        #expect(try vmLck() == baseline + UInt64(5 * MiB + PageSize.bytes))
        // Growing is not what shrink does; the same length is a no-op.
        region.shrink(to: 5 * MiB + PageSize.bytes)
        #expect(try vmLck() == baseline + UInt64(5 * MiB + PageSize.bytes))
        // The head is still mapped and usable.
        region.base.storeBytes(of: 0xAB, toByteOffset: 5 * MiB, as: UInt8.self)
        #expect(region.base.load(fromByteOffset: 5 * MiB, as: UInt8.self) == 0xAB)
        region.shrink(to: 0)
        #expect(region.length == 0)
        #expect(try vmLck() == baseline)
        region.release()  // after shrinking to 0: nothing left, no double munmap
        #expect(try vmLck() == baseline)
    }

    @Test func releaseReturnsToBaselineAndIsIdempotent() throws {
        let baseline = try vmLck()
        let region = try LockedRegion(length: 8 * MiB, hugePages: false, touch: true)
        #expect(try vmLck() == baseline + UInt64(8 * MiB))
        region.release()
        #expect(try vmLck() == baseline)
        region.release()
        region.shrink(to: 0)
        #expect(try vmLck() == baseline)
    }

    @Test func deinitReleases() throws {
        let baseline = try vmLck()
        do {
            let region = try LockedRegion(length: 4 * MiB, hugePages: true)
            #expect(try vmLck() == baseline + UInt64(4 * MiB))
            withExtendedLifetime(region) {}
        }
        #expect(try vmLck() == baseline)
    }

    @Test func hugePageRegionsAre2MiBAligned() throws {
        #expect(LockedRegion.hugePageSize == 2 * MiB)
        for length in [2 * MiB, 6 * MiB + PageSize.bytes, 64 * MiB] {
            let region = try LockedRegion(length: length, hugePages: true)
            #expect(UInt(bitPattern: region.base) % UInt(2 * MiB) == 0, "length \(length)")
            region.release()
        }
        let plain = try LockedRegion(length: PageSize.bytes, hugePages: false)
        #expect(UInt(bitPattern: plain.base) % UInt(PageSize.bytes) == 0)
    }

    @Test(arguments: [false, true])
    func memoryIsReadableAndWritable(hugePages: Bool) throws {
        let length = 16 * MiB
        let region = try LockedRegion(length: length, hugePages: hugePages, touch: hugePages)
        defer { region.release() }
        // Anonymous memory starts zeroed.
        #expect(region.base.load(fromByteOffset: length - 1, as: UInt8.self) == 0)
        let words = length / 8
        let p = region.base.bindMemory(to: UInt64.self, capacity: words)
        for i in stride(from: 0, to: words, by: 97) { p[i] = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 }
        p[words - 1] = 0xDEAD_BEEF
        var mismatches = 0
        for i in stride(from: 0, to: words, by: 97) where p[i] != UInt64(i) &* 0x9E37_79B9_7F4A_7C15 { mismatches += 1 }
        #expect(mismatches == 0)
        #expect(p[words - 1] == 0xDEAD_BEEF)
    }

    @Test func lockedPagesAreResident() throws {
        let length = 8 * MiB
        let region = try LockedRegion(length: length, hugePages: false)
        defer { region.release() }
        let pages = length / PageSize.bytes
        var vec = [UInt8](repeating: 0, count: pages)
        #expect(mincore(region.base, length, &vec) == 0)
        #expect(vec.allSatisfy { $0 & 1 == 1 }, "mlock populated every page")
    }
}

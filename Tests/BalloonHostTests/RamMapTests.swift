// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import Testing

private let KiB: UInt64 = 1 << 10
private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

private func entries(_ map: RamMap) -> [[UInt64]] { map.entries.map { [$0.gpa, $0.size, $0.offset] } }
private func pieces(_ p: [RamMap.FileRange]?) -> [[UInt64]]? { p?.map { [$0.offset, $0.length] } }

@Suite struct RamMapTests {
    @Test func linear() throws {
        let map = try RamMap.linear(size: GiB)
        #expect(entries(map) == [[0, GiB, 0]])
        #expect(map.ramSize == GiB)
        #expect(pieces(map.translate(gpa: 0, length: 4 * KiB)) == [[0, 4 * KiB]])
        #expect(pieces(map.translate(gpa: GiB - 4 * KiB, length: 4 * KiB)) == [[GiB - 4 * KiB, 4 * KiB]])
        #expect(map.translate(gpa: GiB - 4 * KiB, length: 8 * KiB) == nil)  // runs past the end
        #expect(map.translate(gpa: GiB, length: 4 * KiB) == nil)
        #expect(map.translate(gpa: UInt64.max - 4095, length: 8192) == nil)  // overflow
        #expect(map.translate(gpa: 0, length: 0) == nil)
    }

    /// hw/i386/pc_piix.c: max-ram-below-4g 0xe0000000; RAM ≥ that → gigabyte-aligned lowmem 0xc0000000.
    @Test(arguments: [
        (GiB, [[0, GiB, 0]]),
        (3 * GiB, [[0, 3 * GiB, 0]]),  // below 3.5 GiB: all low
        (3 * GiB + 256 * MiB, [[0, 3 * GiB + 256 * MiB, 0]]),
        (3 * GiB + 512 * MiB, [[0, 3 * GiB, 0], [4 * GiB, 512 * MiB, 3 * GiB]]),
        (4 * GiB, [[0, 3 * GiB, 0], [4 * GiB, GiB, 3 * GiB]]),
        (8 * GiB, [[0, 3 * GiB, 0], [4 * GiB, 5 * GiB, 3 * GiB]]),
    ])
    func pcPreset(size: UInt64, expected: [[UInt64]]) throws {
        let map = try RamMap.pc(ramSize: size)
        #expect(entries(map) == expected)
        #expect(map.ramSize == size)
        #expect(entries(try RamMap.parse("pc", ramSize: size)) == expected)
    }

    /// hw/i386/pc_q35.c: RAM ≥ 0xb0000000 → lowmem 0x80000000, else all below 4 GiB.
    @Test(arguments: [
        (GiB, [[0, GiB, 0]]),
        (2 * GiB + 512 * MiB, [[0, 2 * GiB + 512 * MiB, 0]]),
        (2 * GiB + 768 * MiB, [[0, 2 * GiB, 0], [4 * GiB, 768 * MiB, 2 * GiB]]),
        (3 * GiB, [[0, 2 * GiB, 0], [4 * GiB, GiB, 2 * GiB]]),
        (4 * GiB, [[0, 2 * GiB, 0], [4 * GiB, 2 * GiB, 2 * GiB]]),
        (8 * GiB, [[0, 2 * GiB, 0], [4 * GiB, 6 * GiB, 2 * GiB]]),
    ])
    func q35Preset(size: UInt64, expected: [[UInt64]]) throws {
        let map = try RamMap.q35(ramSize: size)
        #expect(entries(map) == expected)
        #expect(entries(try RamMap.parse("Q35", ramSize: size)) == expected)
    }

    @Test func pcHoleIsNotRam() throws {
        let map = try RamMap.pc(ramSize: 8 * GiB)
        #expect(pieces(map.translate(gpa: 3 * GiB - 4 * KiB, length: 4 * KiB)) == [[3 * GiB - 4 * KiB, 4 * KiB]])
        #expect(map.translate(gpa: 3 * GiB - 4 * KiB, length: 8 * KiB) == nil)  // runs into the hole
        #expect(map.translate(gpa: 3 * GiB, length: 4 * KiB) == nil)
        #expect(map.translate(gpa: 4 * GiB - 4 * KiB, length: 8 * KiB) == nil)  // from the hole into high RAM
        #expect(pieces(map.translate(gpa: 4 * GiB, length: 2 * MiB)) == [[3 * GiB, 2 * MiB]])
        #expect(pieces(map.translate(gpa: 9 * GiB - 4 * KiB, length: 4 * KiB)) == [[8 * GiB - 4 * KiB, 4 * KiB]])
        #expect(map.translate(gpa: 9 * GiB, length: 4 * KiB) == nil)
        // A range covering the whole hole is refused even though both ends are RAM.
        #expect(map.translate(gpa: 2 * GiB, length: 3 * GiB) == nil)
    }

    @Test func q35FourGiBHighRam() throws {
        let map = try RamMap.q35(ramSize: 4 * GiB)
        #expect(pieces(map.translate(gpa: 4 * GiB + 4 * KiB, length: 4 * KiB)) == [[2 * GiB + 4 * KiB, 4 * KiB]])
        #expect(map.translate(gpa: 2 * GiB, length: 4 * KiB) == nil)
        #expect(map.translate(gpa: 6 * GiB, length: 4 * KiB) == nil)
    }

    @Test func explicitMapSplitsRangesAcrossEntries() throws {
        // Two GPA-contiguous entries stored apart in the file.
        let map = try RamMap.parse("0:1G@0, 1G:1G@2G", ramSize: 3 * GiB)
        #expect(entries(map) == [[0, GiB, 0], [GiB, GiB, 2 * GiB]])
        #expect(pieces(map.translate(gpa: GiB - 4 * KiB, length: 12 * KiB)) == [[GiB - 4 * KiB, 4 * KiB], [2 * GiB, 8 * KiB]])
        #expect(map.translate(gpa: 2 * GiB - 4 * KiB, length: 8 * KiB) == nil)
    }

    @Test func explicitMapHexAndMerging() throws {
        let map = try RamMap.parse("0x0:0xc0000000@0x0,0x100000000:1G@0xc0000000", ramSize: 4 * GiB)
        #expect(entries(map) == [[0, 3 * GiB, 0], [4 * GiB, GiB, 3 * GiB]])
        #expect(map == (try RamMap.pc(ramSize: 4 * GiB)))
        // Contiguous in both spaces: one entry.
        #expect(entries(try RamMap.parse("0:512M@0,512M:512M@512M", ramSize: GiB)) == [[0, GiB, 0]])
    }

    @Test(arguments: [
        "0:512M@0,256M:256M@512M",  // overlap in GPA
        "0:512M@0,1G:256M@256M",  // overlap in the file
        "0:2G@0",  // beyond guest RAM (1 GiB)
        "0:0@0",  // empty
        "0:1G",  // no offset
        "banana",
        "0x:1G@0",
        "0xffffffffffffffff:1G@0",  // overflow
    ])
    func explicitMapErrors(spec: String) {
        #expect(throws: HostError.self) { try RamMap.parse(spec, ramSize: GiB) }
    }
}

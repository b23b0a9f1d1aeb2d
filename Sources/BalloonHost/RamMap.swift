// SPDX-License-Identifier: Apache-2.0
/// Where guest-physical addresses (GPAs) live in the guest's RAM backend file.
///
/// QEMU allocates guest RAM as one block (the memory-backend file) and maps
/// pieces of it into the guest-physical address space with aliases. On x86
/// the block is split around the PCI hole below 4 GiB (hw/i386/pc.c
/// `pc_memory_init`): `ram-below-4g` is file [0, lowmem) at GPA 0, and
/// `ram-above-4g` is file [lowmem, size) at GPA 4 GiB. `lowmem` depends on
/// the machine type (see `pc(ramSize:)` and `q35(ramSize:)`).
///
/// Pure: no syscalls. Entries are sorted by GPA and overlap neither in GPA
/// nor in the file, so a GPA range maps to file bytes one to one.
public struct RamMap: Sendable, Equatable, CustomStringConvertible {
    /// `size` bytes of guest RAM at `gpa`, stored in the file at `offset`.
    public struct Entry: Sendable, Equatable, CustomStringConvertible {
        public var gpa: UInt64
        public var size: UInt64
        public var offset: UInt64

        public init(gpa: UInt64, size: UInt64, offset: UInt64) {
            self.gpa = gpa
            self.size = size
            self.offset = offset
        }

        public var gpaEnd: UInt64 { gpa + size }
        public var description: String { "gpa \(hex(gpa))-\(hex(gpa + size)) → file \(hex(offset))-\(hex(offset + size))" }
    }

    /// A piece of the backend file.
    public struct FileRange: Sendable, Equatable, CustomStringConvertible {
        public var offset: UInt64
        public var length: UInt64
        public init(offset: UInt64, length: UInt64) {
            self.offset = offset
            self.length = length
        }
        public var end: UInt64 { offset + length }
        public var description: String { "file \(hex(offset))+\(hex(length))" }
    }

    public let entries: [Entry]

    /// 4 GiB: where x86 machines map RAM above the PCI hole.
    public static let fourGiB: UInt64 = 1 << 32

    /// Validates: every entry non-empty, no overflow, within `fileSize` (when
    /// given), no two entries overlapping in GPA or in the file.
    public init(entries: [Entry], fileSize: UInt64? = nil) throws(HostError) {
        var sorted = entries.sorted { $0.gpa < $1.gpa }
        for e in sorted {
            guard e.size > 0 else { throw .usage("invalid RAM map entry \(e): size 0") }
            guard e.gpa <= UInt64.max - e.size, e.offset <= UInt64.max - e.size else {
                throw .usage("invalid RAM map entry at gpa \(hex(e.gpa)): address overflow")
            }
            if let fileSize, e.offset + e.size > fileSize {
                throw .usage("RAM map entry \(e) lies beyond the end of guest RAM (\(hex(fileSize)) bytes)")
            }
        }
        for i in sorted.indices.dropFirst() where sorted[i].gpa < sorted[i - 1].gpaEnd {
            throw .usage("RAM map entries overlap in guest-physical addresses: \(sorted[i - 1]) and \(sorted[i])")
        }
        let byOffset = sorted.sorted { $0.offset < $1.offset }
        for i in byOffset.indices.dropFirst() where byOffset[i].offset < byOffset[i - 1].offset + byOffset[i - 1].size {
            throw .usage("RAM map entries overlap in the backend file: \(byOffset[i - 1]) and \(byOffset[i])")
        }
        // Merge entries contiguous in both GPA and file (fewer splits later).
        var merged: [Entry] = []
        for e in sorted {
            if let last = merged.last, last.gpaEnd == e.gpa, last.offset + last.size == e.offset {
                merged[merged.count - 1].size += e.size
            } else {
                merged.append(e)
            }
        }
        sorted = merged
        guard !sorted.isEmpty else { throw .usage("the RAM map is empty") }
        self.entries = sorted
    }

    /// Guest RAM in bytes (the sum of the entries).
    public var ramSize: UInt64 { entries.reduce(0) { $0 + $1.size } }

    public var description: String { entries.map(\.description).joined(separator: ", ") }

    // MARK: - presets

    /// GPA == file offset for [0, size): a guest whose RAM is one block at
    /// GPA 0, e.g. an x86 `pc`/`q35` guest whose RAM fits below the PCI hole
    /// (then `pc`/`q35` give the same map), or `microvm` below 3 GiB.
    public static func linear(size: UInt64) throws(HostError) -> RamMap {
        try RamMap(entries: [Entry(gpa: 0, size: size, offset: 0)])
    }

    /// The low/high split: [0, lowmem) at GPA 0, the rest at 4 GiB.
    public static func split(ramSize: UInt64, lowmem: UInt64) throws(HostError) -> RamMap {
        guard ramSize > 0 else { throw .usage("guest RAM size is 0") }
        let below = min(ramSize, lowmem)
        var entries = [Entry(gpa: 0, size: below, offset: 0)]
        if ramSize > below { entries.append(Entry(gpa: fourGiB, size: ramSize - below, offset: below)) }
        return try RamMap(entries: entries)
    }

    /// QEMU `-M pc` (i440FX), current machine types (hw/i386/pc_piix.c
    /// `pc_init1`): `max-ram-below-4g` defaults to 0xe0000000 (3.5 GiB). When
    /// RAM ≥ that, gigabyte alignment (every machine type since pc-i440fx-2.0;
    /// pc-1.7 and older did not align) lowers the split to 0xc0000000 (3 GiB).
    /// Then RAM ≥ lowmem → lowmem below 4 GiB, the rest at 4 GiB; otherwise all
    /// RAM is below 4 GiB. `-m 4G` → 3 GiB low + 1 GiB high; `-m 3.25G` → all low.
    public static func pc(ramSize: UInt64) throws(HostError) -> RamMap {
        let lowmem: UInt64 = ramSize >= 0xE000_0000 ? 0xC000_0000 : 0xE000_0000
        return try split(ramSize: ramSize, lowmem: lowmem)
    }

    /// QEMU `-M q35` (hw/i386/pc_q35.c `pc_q35_init`): RAM ≥ 0xb0000000
    /// (2.75 GiB) → lowmem 0x80000000 (2 GiB: leaves room for the 256 MiB
    /// MMCONFIG window and 32-bit PCI BARs, and keeps 1 GiB alignment);
    /// otherwise all RAM below 4 GiB. `max-ram-below-4g` (default 4 GiB) can
    /// only lower it. `-m 3G` → 2 GiB low + 1 GiB high; `-m 2.5G` → all low.
    public static func q35(ramSize: UInt64) throws(HostError) -> RamMap {
        let lowmem: UInt64 = ramSize >= 0xB000_0000 ? 0x8000_0000 : 0xB000_0000
        return try split(ramSize: ramSize, lowmem: lowmem)
    }

    /// `--ram-map`: `linear` (default), `pc`, `q35`, or explicit entries
    /// `GPA:SIZE@OFFSET[,GPA:SIZE@OFFSET…]` (numbers in hex with `0x`, or
    /// decimal bytes with an optional K/M/G/T unit). `ramSize` is the guest
    /// RAM (the backend file's size unless `--ram-size` says otherwise);
    /// explicit entries must lie inside it.
    public static func parse(_ spec: String, ramSize: UInt64) throws(HostError) -> RamMap {
        switch spec.trimmingSpaces.lowercased() {
        case "", "linear": return try linear(size: ramSize)
        case "pc", "i440fx": return try pc(ramSize: ramSize)
        case "q35": return try q35(ramSize: ramSize)
        default: break
        }
        var entries: [Entry] = []
        for part in spec.split(separator: ",") {
            let text = String(part).trimmingSpaces
            guard let colon = text.firstIndex(of: ":"), let at = text.firstIndex(of: "@"), colon < at else {
                throw .usage("invalid RAM map entry \"\(text)\": expected GPA:SIZE@OFFSET, e.g. 0x100000000:1G@0xc0000000, or linear, pc, q35")
            }
            let gpa = try number(String(text[..<colon]), in: text)
            let size = try number(String(text[text.index(after: colon)..<at]), in: text)
            let offset = try number(String(text[text.index(after: at)...]), in: text)
            entries.append(Entry(gpa: gpa, size: size, offset: offset))
        }
        return try RamMap(entries: entries, fileSize: ramSize)
    }

    static func number(_ text: String, in entry: String) throws(HostError) -> UInt64 {
        let t = text.trimmingSpaces
        if t.lowercased().hasPrefix("0x") {
            guard let v = UInt64(t.dropFirst(2), radix: 16) else {
                throw .usage("invalid number \"\(t)\" in RAM map entry \"\(entry)\"")
            }
            return v
        }
        do { return try HostSize.parse(t) } catch {
            throw .usage("invalid number \"\(t)\" in RAM map entry \"\(entry)\"")
        }
    }

    // MARK: - translation

    /// The file pieces behind [gpa, gpa + length), in GPA order; nil when any
    /// byte of it is not guest RAM (the PCI hole, beyond the end, overflow).
    /// A range crossing from one entry into a GPA-contiguous next one is split.
    public func translate(gpa: UInt64, length: UInt64) -> [FileRange]? {
        guard length > 0, gpa <= UInt64.max - length else { return nil }
        let end = gpa + length
        // The last entry starting at or below gpa.
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].gpa <= gpa { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        var index = lo - 1
        var cursor = gpa
        var pieces: [FileRange] = []
        while cursor < end {
            guard index < entries.count else { return nil }
            let e = entries[index]
            guard e.gpa <= cursor, cursor < e.gpaEnd else { return nil }  // a gap
            let take = min(end, e.gpaEnd) - cursor
            pieces.append(FileRange(offset: e.offset + (cursor - e.gpa), length: take))
            cursor += take
            index += 1
        }
        return pieces
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

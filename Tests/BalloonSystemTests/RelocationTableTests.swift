// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import Foundation
import Glibc
import Testing

@Suite struct RelocationTable {
    /// Present bits of this process's pages in [start, end) (/proc/self/pagemap).
    static func presentPages(_ range: Range<UInt>) throws -> Int {
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let file = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/pagemap"))
        defer { try? file.close() }
        try file.seek(toOffset: UInt64(range.lowerBound / page * 8))
        let data = try file.read(upToCount: range.count / Int(page) * 8) ?? Data()
        return stride(from: 0, to: data.count, by: 8).filter { data[data.startIndex + $0 + 7] & 0x80 != 0 }.count
    }

    /// The test runner is a PIE like balloond: its table is found, whole pages
    /// of it leave the page tables, and the process goes on (the next dynamic
    /// symbol lookup and allocation still work).
    @Test func theExecutablesTableLeavesMemory() throws {
        let range = try #require(try ProcessControl.releaseRelocationTable(), "no relocation table in a read-only segment")
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        #expect(range.lowerBound % page == 0 && range.upperBound % page == 0)
        #expect(range.count >= Int(page))
        #expect(try Self.presentPages(range) == 0)
        #expect(dlsym(nil, "getpid") != nil)  // RTLD_DEFAULT
        #expect([Int](repeating: 7, count: 1000).reduce(0, +) == 7000)
        // Twice is harmless.
        #expect(try ProcessControl.releaseRelocationTable() == range)
    }
}

// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import BalloonDaemon

/// `Cushion=auto` reads the zones' high watermarks from /proc/zoneinfo.
@Suite struct CushionTests {
    @Test func sumsEveryZonesHighWatermarkAndNothingElse() {
        // As Linux 6.1 prints it (trimmed): per-cpu pagesets have "high:" too.
        let zoneinfo = """
            Node 0, zone      DMA
              pages free     3840
                    boost    0
                    min      176
                    low      220
                    high     264
                    spanned  4095
              pagesets
                cpu: 0
                          count: 0
                          high:  0
            Node 0, zone    DMA32
              pages free     180000
                    boost    0
                    min      11088
                    low      13860
                    high     16632
                    spanned  258048
            """
        #expect(FreeMemoryWatch.highWatermarkPages(Array(zoneinfo.utf8)) == 264 + 16632)
    }

    @Test func theLiveFileHasWatermarks() throws {
        let text = try String(contentsOfFile: "/proc/zoneinfo", encoding: .utf8)
        #expect(FreeMemoryWatch.highWatermarkPages(Array(text.utf8)) > 0)
    }
}

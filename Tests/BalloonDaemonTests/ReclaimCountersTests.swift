// SPDX-License-Identifier: Apache-2.0
import BalloonStats
import Foundation
import Testing

@testable import BalloonDaemon

/// The floor check's reclaim counters, read from /proc/vmstat's bytes with no
/// key made: the same as from the dictionary of every line.
@Suite struct ReclaimCountersTests {
    static func counters(_ text: String) -> (bytes: ReclaimCounters, dictionary: ReclaimCounters) {
        let bytes = Array(text.utf8)
        let fromBytes = bytes.withUnsafeBytes { ReclaimCounters(vmstat: $0) }
        return (fromBytes, ReclaimCounters(vmstat: ProcParse.vmstat(bytes)))
    }

    @Test func currentKernel() {
        let text = """
            nr_free_pages 1000
            allocstall_dma 1
            allocstall_dma32 2
            allocstall_normal 30
            allocstall_movable 400
            pgscan_kswapd 99999
            pgscan_direct 77
            pgscan_direct_throttle 5
            oom_kill 3
            oom_kill_extra 100
            """
        let (bytes, dictionary) = Self.counters(text)
        #expect(bytes == ReclaimCounters(allocStalls: 433, directScans: 77, oomKills: 3))
        #expect(bytes == dictionary)
    }

    @Test func kernelsBefore48SumTheZones() {
        let text = "allocstall 12\npgscan_direct_dma32 10\npgscan_direct_normal 20\npgscan_direct_throttle 7\npgsteal_direct_normal 1\n"
        let (bytes, dictionary) = Self.counters(text)
        #expect(bytes == ReclaimCounters(allocStalls: 12, directScans: 30, oomKills: 0))
        #expect(bytes == dictionary)
    }

    @Test func malformedLinesCountAsTheDictionarySkipsThem() {
        let text = "allocstall_normal\nallocstall_movable x\noom_kill 2 3\npgscan_direct 4\nallocstall_d\u{1}ma 9\n"
        let (bytes, dictionary) = Self.counters(text)
        #expect(bytes == ReclaimCounters(allocStalls: 0, directScans: 4, oomKills: 0))
        #expect(bytes == dictionary)
    }

    @Test func thisMachinesVmstat() throws {
        let text = try String(contentsOfFile: "/proc/vmstat", encoding: .utf8)
        let (bytes, dictionary) = Self.counters(text)
        #expect(bytes == dictionary)
    }
}

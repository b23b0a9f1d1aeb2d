// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import BalloonController

/// The periodic frame rescan runs only when the kernel's count of moved pages
/// changed since the frames were last read.
@Suite struct RescanGateTests {
    @Test func unchangedCountSkipsAndAnyChangeRescans() {
        var gate = RescanGate()
        gate.framesRead(moved: 100)
        #expect(!gate.worthRescanning(moved: 100))
        #expect(gate.worthRescanning(moved: 101))
        // A counter that went backwards (a wrapped or reset count) is a change too.
        #expect(gate.worthRescanning(moved: 99))
        gate.framesRead(moved: 101)
        #expect(!gate.worthRescanning(moved: 101))
    }

    @Test func unknownCountsAlwaysRescan() {
        var gate = RescanGate()
        #expect(gate.worthRescanning(moved: 5))  // frames never read under a count
        gate.framesRead(moved: nil)
        #expect(gate.worthRescanning(moved: 5))
        #expect(gate.worthRescanning(moved: nil))
        gate.framesRead(moved: 5)
        #expect(gate.worthRescanning(moved: nil))
    }
}

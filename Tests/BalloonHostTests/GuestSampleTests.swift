// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import BalloonPolicy
import BalloonProtocol
import Testing

/// A guest's STATS event as the host policies see it (PeerEvents.swift).
struct GuestSampleTests {
    @Test func statsBecomeThePolicysSample() throws {
        let sample = try #require(GuestSample(Canned.statsReply, at: .seconds(5)))
        #expect(sample.at == .seconds(5))
        #expect(sample.memTotal == 8_331_440_128 && sample.memAvailable == 7_500_000_000)
        #expect(sample.memFree == 7_000_000_000)
        #expect(sample.psiSomeAvg10 == 1.25 && sample.psiFullAvg10 == 0)
        // The cumulative stall: the auto policy's stall within one interval.
        #expect(sample.psiSomeTotal == 12345)
        #expect(sample.majorFaults == 1234 && sample.swapOut == 4096)
        // Page-cache refaults, which no virtio stat carries: auto's refault signal.
        #expect(sample.fileRefaults == 4321)
        #expect(sample.balloonActual == 134_217_728)
    }

    @Test func withoutTheTwoSizesThereIsNoSample() throws {
        let reply = try StatsReply(json: [
            "stats": ["free-memory": 1], "pressure": nil, "balloon": ["target": 0, "actual": 0],
            "timestamp": ["seconds": 1, "microseconds": 0],
        ])
        #expect(GuestSample(reply, at: .seconds(1)) == nil)
    }

    @Test func aDaemonThatSendsNoRefaultsGivesNone() throws {
        let reply = try StatsReply(json: [
            "stats": ["total-memory": 1_073_741_824, "available-memory": 536_870_912], "pressure": nil, "balloon": ["target": 0, "actual": 0],
            "timestamp": ["seconds": 1, "microseconds": 0],
        ])
        #expect(try #require(GuestSample(reply, at: .seconds(1))).fileRefaults == nil)
    }
}

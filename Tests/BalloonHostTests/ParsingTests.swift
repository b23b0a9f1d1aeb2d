// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonStats
import Testing

@Suite struct HostSizeTests {
    static let validCases: [(String, UInt64)] = [
        ("0", 0), ("4096", 4096), ("512M", 512 << 20), ("2G", 2 << 30), ("1.5G", 3 << 29),
        ("1.5GiB", 3 << 29), ("1.5gib", 3 << 29), ("64k", 64 << 10), ("64KB", 64 << 10), ("1T", 1 << 40),
        ("0.5M", 512 << 10), (".5M", 512 << 10), ("0G", 0), ("100B", 100), (" 2G ", 2 << 30), ("2 G", 2 << 30),
        ("1.0000001G", 1_073_741_931), ("0.1K", 102), ("16383P", 16383 << 50),
    ]

    @Test(arguments: validCases)
    func valid(text: String, bytes: UInt64) throws {
        #expect(try HostSize.parse(text) == bytes)
    }

    @Test(arguments: [
        "", " ", "M", "G1", "-1", "-1G", "1.5", "1.5B", "1..5G", "1.G", ".", "1e9", "0x10", "12X", "1.5 GB B",
        "16384P", "18446744073709551616", "99999999999999999999G", "١٢M",
    ])
    func invalid(text: String) {
        #expect(throws: HostError.self) { try HostSize.parse(text) }
    }

    @Test func messageNamesTheInput() {
        let error = #expect(throws: HostError.self) { try HostSize.parse("12X") }
        #expect(error?.description == "invalid size \"12X\": unknown unit \"x\" (use K, M, G, T, P; powers of 1024)")
    }
}

@Suite struct ReplyDecodingTests {
    @Test func infoIgnoresUnknownFields() throws {
        let info = try GuestSession.decode(Canned.info, as: InfoReply.self, for: .info)
        #expect(info.protocolVersion == 1)
        #expect(info.memoryTotal == 8_331_440_128)
        #expect(info.maxBalloon == 6_665_152_102)
        #expect(info.memAvailableFloor == 268_435_456)
        #expect(info.transparentHugePages == true)
        #expect(info.channel == "virtio-serial:/dev/virtio-ports/org.balloond.0")
        let error = #expect(throws: HostError.self) { try GuestSession.decode(["version": "9.9", "new-thing": true], as: InfoReply.self, for: .info) }
        #expect(error?.description.contains("info reply: missing field \"protocol\"") == true, "\(String(describing: error))")
    }

    @Test func targetReplyStates() throws {
        let done = SetTargetReply(target: 4096, effectiveTarget: 4096, actual: 4096)
        #expect(done.isDone && !done.isStoppedShort)
        let short = SetTargetReply(target: 8192, effectiveTarget: 4096, actual: 4096)
        #expect(!short.isDone && short.isStoppedShort)
        let moving = SetTargetReply(target: 8192, effectiveTarget: 8192, actual: 0)
        #expect(!moving.isDone && !moving.isStoppedShort)
        #expect(throws: HostError.self) { try GuestSession.decode(["target": 1], as: SetTargetReply.self, for: .setTarget) }
    }

    @Test func queryWithReason() throws {
        let reason = StopReason(code: .maxBalloon, desc: "the target exceeds max-balloon (6 GiB)")
        let status = try QueryReply(json: Canned.query(target: 8 << 30, effective: 6 << 30, actual: 6 << 30, state: .unreachable, reason: reason))
        #expect(status.state == .unreachable)
        #expect(status.reason == reason)
        #expect(status.limits.chunkSize == 64 << 20)
        #expect(try QueryReply(json: Canned.query(target: 0, actual: 0, state: .idle)).reason == nil)
    }

    @Test func statsMissingAndNullPressure() throws {
        let stats = try StatsReply(json: [
            "stats": ["swap-in": 1], "pressure": nil, "balloon": ["target": 0, "actual": 0],
            "timestamp": ["seconds": 1, "microseconds": 0],
        ])
        #expect(stats.stats[.swapIn] == 1)
        #expect(stats.stats[.oomKills] == nil)
        #expect(stats.pressure == nil)
    }
}

@Suite struct FormatTests {
    @Test func fixedAndSeconds() {
        #expect(HostFormat.fixed(1.25, decimals: 2) == "1.25")
        #expect(HostFormat.fixed(0.005, decimals: 2) == "0.01" || HostFormat.fixed(0.005, decimals: 2) == "0.00")
        #expect(HostFormat.fixed(12, decimals: 2) == "12.00")
        #expect(HostFormat.fixed(-0.5, decimals: 1) == "-0.5")
        #expect(HostFormat.seconds(5) == "5 s")
        #expect(HostFormat.seconds(0.25) == "0.25 s")
    }

    @Test func progressLine() {
        #expect(HostFormat.progress(actual: 192 << 20, target: 256 << 20) == "actual 192 MiB / target 256 MiB")
    }

    @Test func statsTableShowsAllSixteenAndDashes() throws {
        let text = HostFormat.stats(try StatsReply(json: Canned.stats))
        for stat in VirtioStat.allCases { #expect(text.contains(stat.name)) }
        let lines = text.split(separator: "\n")
        #expect(lines.first { $0.hasPrefix("htlb-pgalloc") }?.hasSuffix(" -") == true)
        #expect(lines.first { $0.hasPrefix("major-faults") }?.hasSuffix(" 1234") == true)
        #expect(lines.first { $0.hasPrefix("file-refaults") }?.hasSuffix(" 4321") == true)
        #expect(lines.first { $0.hasPrefix("swap-out") }?.hasSuffix(" 4 KiB") == true)
        #expect(lines.first { $0.hasPrefix("total-memory") }?.hasSuffix(" 7.8 GiB") == true)
        #expect(lines.first { $0.hasPrefix("async-scans") }?.hasSuffix(" 10 B") == true)  // bytes, as the driver reports them
        #expect(lines.contains { $0.hasPrefix("some") && $0.contains("1.25") && $0.contains("12345") })
        #expect(text.contains("balloon  target 256 MiB / actual 128 MiB"))
    }

    @Test func eventLines() {
        let change = GuestEvent.balloonChange(.init(actual: 192 << 20, target: 256 << 20)).event(at: Timestamp(seconds: 10, microseconds: 5))
        #expect(HostFormat.event(change) == "10.000005 BALLOON_CHANGE actual 192 MiB / target 256 MiB")
        let other = Event("FUTURE", data: ["x": 1], timestamp: Timestamp(seconds: 1, microseconds: 0))
        #expect(HostFormat.event(other) == "1.000000 FUTURE {\"x\":1}")
    }
}

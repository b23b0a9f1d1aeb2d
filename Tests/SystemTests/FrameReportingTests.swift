// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// Page flags from /proc/kpageflags (root): bit 33 MLOCKED, bit 18 UNEVICTABLE.
func pageFlags(_ pfn: UInt64) -> UInt64? {
    guard let fd = try? Descriptor.open("/proc/kpageflags", flags: O_RDONLY) else { return nil }
    var value: UInt64 = 0
    let n = pread(fd.raw, &value, 8, off_t(pfn * 8))
    return n == 8 ? value : nil
}

func ranges(_ event: Event) -> [(UInt64, UInt64)] {
    (event.data["ranges"]?.array ?? []).compactMap { r in
        guard let a = r.array, a.count == 2, let p = a[0].uint64, let c = a[1].uint64 else { return nil }
        return (p, c)
    }
}

/// Frame reporting against the real pagemap of this machine (root has
/// CAP_SYS_ADMIN here, so frame numbers are visible). The grace time's
/// logic is unit-tested on a fake clock (FrameReporterTests); here the
/// daemon runs with a short grace (BALLOOND_TEST_FRAME_GRACE_MS) where a
/// test must see it end.
@Suite(.serialized) struct FrameReporting {
    static let shortGrace = "1000"

    func start(graceMilliseconds: String? = nil) throws -> (Sandbox, DaemonProcess, RawClient) {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=16M\n")
        let daemon = try DaemonProcess(
            arguments: ["--config", box.configPath], waitForSocket: box.socket,
            environment: graceMilliseconds.map { ["BALLOOND_TEST_FRAME_GRACE_MS": $0] } ?? [:])
        let client = try RawClient(socket: box.socket)
        try client.sync()
        return (box, daemon, client)
    }

    @Test func inflatedChunksReportTheirLockedFrames() throws {
        let (box, daemon, client) = try start()
        _ = box
        var events: [Event] = []
        // Something held before reporting starts is reported when it starts.
        try client.call("set-target", ["target": .uint(16 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        let on = try client.call("set-frame-reporting", ["enabled": true], events: &events)
        #expect(on.result.map { $0["frames"]?.uint64 } == .success(4096))
        let first = try client.waitForEvent("FRAMES_INFLATED", into: &events)
        #expect(first.data["page-size"]?.uint64 == 4096)
        #expect(ranges(first).reduce(0) { $0 + $1.1 } == 4096)

        events = []
        try client.call("set-target", ["target": .uint(48 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        let inflated = events.filter { $0.name == "FRAMES_INFLATED" }
        #expect(inflated.count == 2)
        let all = ([first] + inflated).flatMap(ranges)
        #expect(all.reduce(0) { $0 + $1.1 } == 48 * MiB / 4096)
        // Sequence numbers increase by one per FRAMES_* event.
        let seqs = ([first] + inflated).compactMap { $0.data["seq"]?.uint64 }
        #expect(seqs == Array(seqs[0]..<(seqs[0] + UInt64(seqs.count))))
        // Every reported frame is mlocked and unevictable: it is ours.
        var checked = 0
        for (pfn, count) in all {
            for p in stride(from: pfn, to: pfn + count, by: 97) {
                guard let flags = pageFlags(p) else { continue }
                #expect(flags & (1 << 33) != 0, "frame \(p) not MLOCKED")
                #expect(flags & (1 << 18) != 0, "frame \(p) not UNEVICTABLE")
                checked += 1
            }
        }
        #expect(checked > 100)
        // No two reported ranges overlap.
        let sorted = all.sorted { $0.0 < $1.0 }
        for (a, b) in zip(sorted, sorted.dropFirst()) { #expect(a.0 + a.1 <= b.0) }
        #expect(try client.value("rescan-frames")["moved"]?.uint64 != nil)
        _ = daemon
    }

    @Test func unacknowledgedMemoryStaysLockedUntilTheAck() throws {
        let (box, daemon, client) = try start()
        _ = box
        var events: [Event] = []
        try client.call("set-frame-reporting", ["enabled": true], events: &events)
        try client.call("set-target", ["target": .uint(32 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        let inflatedSeqs = events.filter { $0.name == "FRAMES_INFLATED" }.compactMap { $0.data["seq"]?.uint64 }
        #expect(inflatedSeqs.count == 2)

        // Deflate by one chunk before any ack: reported, but still locked.
        events = []
        try client.call("set-target", ["target": .uint(16 * MiB)], events: &events)
        let deflated = try client.waitForEvent("FRAMES_DEFLATED", into: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(ranges(deflated).reduce(0) { $0 + $1.1 } == 4096)
        #expect(try client.value("query")["actual"]?.uint64 == 16 * MiB)
        #expect(balloonLocked(daemon.pid) == 32 * MiB, "released before the host acknowledged")

        // The ack of the deflate releases it.
        let seq = deflated.data["seq"]!.uint64!
        #expect(try client.value("frames-ack", ["seq": .uint(seq)])["acked"]?.uint64 == seq)
        #expect(balloonLocked(daemon.pid) == 16 * MiB)

        // Once the inflate report is acknowledged, a deflate releases at once.
        events = []
        try client.call("set-target", ["target": 0], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(events.contains { $0.name == "FRAMES_DEFLATED" })
        #expect(balloonLocked(daemon.pid) == 0)
    }

    @Test func aHostThatGoesAwayDoesNotMakeUnacknowledgedMemorySafe() throws {
        let (box, daemon, client) = try start(graceMilliseconds: Self.shortGrace)
        var events: [Event] = []
        try client.call("set-frame-reporting", ["enabled": true], events: &events)
        try client.call("set-target", ["target": .uint(32 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        // The host acknowledges the first chunk only.
        let seqs = events.filter { $0.name == "FRAMES_INFLATED" }.compactMap { $0.data["seq"]?.uint64 }
        #expect(seqs.count == 2)
        try client.call("frames-ack", ["seq": .uint(seqs[0])])
        client.fd.close()
        #expect(waitUntil { daemon.log.contains("frame reporting off: the host went away") })

        // A new host (reporting off) deflates everything: the chunk the old
        // host never acknowledged waits out the grace time; the other goes.
        let next = try RawClient(socket: box.socket)
        try next.sync()
        events = []
        try next.call("set-target", ["target": 0], events: &events)
        _ = try next.waitForEvent("TARGET_REACHED", into: &events)
        #expect(!events.contains { $0.name.hasPrefix("FRAMES_") })
        #expect(balloonLocked(daemon.pid) == 16 * MiB, "unacknowledged memory released before the grace time")
        #expect(waitUntil { balloonLocked(daemon.pid) == 0 })
    }

    @Test func unackedDeflateIsReleasedAfterTheGraceTime() throws {
        let (box, daemon, client) = try start(graceMilliseconds: Self.shortGrace)
        _ = box
        var events: [Event] = []
        try client.call("set-frame-reporting", ["enabled": true], events: &events)
        try client.call("set-target", ["target": .uint(16 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        try client.call("set-target", ["target": 0], events: &events)
        _ = try client.waitForEvent("FRAMES_DEFLATED", into: &events)
        #expect(balloonLocked(daemon.pid) == 16 * MiB)
        #expect(waitUntil { balloonLocked(daemon.pid) == 0 })
        #expect(waitUntil { daemon.log.contains("did not acknowledge a deflate within 1000 ms") })
    }

    @Test func badFrameCommandsAreRefused() throws {
        let (box, daemon, client) = try start()
        _ = (box, daemon)
        guard case let .failure(e) = try client.call("rescan-frames").result else { Issue.record("rescan without reporting"); return }
        #expect(e.errorClass == .genericError)
        guard case let .failure(e2) = try client.call("set-frame-reporting", [:]).result else { Issue.record("no enabled"); return }
        #expect(e2.errorClass == .invalidParameter)
        guard case let .failure(e3) = try client.call("frames-ack", ["seq": "x"]).result else { Issue.record("bad seq"); return }
        #expect(e3.errorClass == .invalidParameter)
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// Protocol rule 5, the guest's half, with real holder processes: when the
/// daemon is SIGKILLed, a holder whose frames the host never acknowledged
/// keeps them locked for the grace time (a host that read the report late
/// may still free them); a holder whose report was acknowledged exits at
/// once. The daemon names its lifetime, and refuses acks meant for another.
@Suite(.serialized) struct HolderLinger {
    static let grace = Duration.seconds(8)

    @Test func unacknowledgedHoldersOutliveAKilledDaemonForTheGraceTime() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=16M\n")
        var daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket,
                                       environment: ["BALLOOND_TEST_FRAME_GRACE_MS": "\(Self.grace.components.seconds * 1000)"])
        let client = try RawClient(socket: box.socket)
        try client.sync()
        var events: [Event] = []
        let on = try FrameReportingReply(json: try client.value("set-frame-reporting", ["enabled": true]))
        let instance = try #require(on.instance)
        #expect(instance.count == 32 && instance.allSatisfy(\.isHexDigit), "\(instance)")
        #expect(on.grace == Self.grace)
        try client.call("set-target", ["target": .uint(32 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        let inflated = events.filter { $0.name == "FRAMES_INFLATED" }.compactMap { $0.data["seq"]?.uint64 }.sorted()
        try #require(inflated.count == 2, "\(events.map(\.name))")

        // An ack naming another lifetime is refused and changes nothing.
        let stale = try client.call("frames-ack", ["seq": .uint(inflated[1]), "instance": "0123456789abcdef0123456789abcdef"])
        guard case let .failure(error) = stale.result else { Issue.record("a stale ack was accepted"); return }
        #expect(error.errorClass == .staleInstance && error.desc.contains(instance), "\(error)")
        // The first chunk's report acknowledged, the second's not.
        #expect(try client.value("frames-ack", ["seq": .uint(inflated[0]), "instance": .string(instance)])["acked"]?.uint64 == inflated[0])

        let holders = children(of: daemon.pid).filter { (statusValue($0, "VmLck") ?? 0) == 16 * MiB }.sorted()
        try #require(holders.count == 2, "holders: \(children(of: daemon.pid))")
        daemon.signal(SIGKILL)
        let killedAt = ContinuousClock.now
        #expect(daemon.waitForExit() != nil)
        func alive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 && (statusValue(pid, "VmLck") ?? 0) > 0 }
        // The acknowledged chunk (the older holder) goes at once; the other stays.
        #expect(waitUntil { !alive(holders[0]) }, "the holder of acknowledged frames outlived the daemon")
        #expect(alive(holders[1]), "the holder of unacknowledged frames died with the daemon")
        #expect(waitUntil(timeout: Self.grace * 4) { !alive(holders[1]) }, "the lingering holder never exited")
        let lingered = ContinuousClock.now - killedAt
        #expect(lingered >= Self.grace * 0.9, "lingered only \(lingered)")
        // A restarted daemon is a new lifetime.
        daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let again = try RawClient(socket: box.socket)
        try again.sync()
        let next = try FrameReportingReply(json: try again.value("set-frame-reporting", ["enabled": true]))
        #expect(next.instance != nil && next.instance != instance)
        #expect(next.grace == .seconds(5))
    }
}

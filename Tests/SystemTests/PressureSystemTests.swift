// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// Pressure handling that can be checked on this machine without putting it
/// under memory pressure (that belongs in the guest, see VMTests): holder
/// processes and the OOM killer's last resort, and the PSI trigger fallback
/// this machine forces (no CAP_SYS_RESOURCE).
@Suite(.serialized) struct HoldersAndTriggers {
    @Test func chunksLiveInHoldersTheOOMKillerTakesFirst() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=32M\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        var events: [Event] = []
        try client.call("set-target", ["target": .uint(96 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        // Holders with a chunk each, and at most one spare waiting for the next.
        let all = children(of: daemon.pid)
        let holders = all.filter { (statusValue($0, "VmLck") ?? 0) > 0 }
        #expect(holders.count == 3)
        #expect(all.count <= 4)
        for pid in holders { #expect(statusValue(pid, "VmLck") == 32 * MiB) }
        for pid in all {
            let adj = (try? String(contentsOfFile: "/proc/\(pid)/oom_score_adj", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(adj == "1000", "holder \(pid) has oom_score_adj \(adj ?? "?")")
        }
        #expect(statusValue(daemon.pid, "VmLck") == 0)
        #expect(try client.value("info")["holder-processes"]?.bool == true)

        // The OOM killer's last resort, as the kernel does it: SIGKILL.
        kill(holders[1], SIGKILL)
        events = []
        let deflated = try client.waitForEvent("DEFLATED", into: &events)
        #expect(deflated.data["reason"]?.string == "holder-killed")
        #expect(deflated.data["bytes"]?.uint64 == 32 * MiB)
        #expect(deflated.data["actual"]?.uint64 == 64 * MiB)
        // Times on the guest's CLOCK_MONOTONIC; nothing was released in the
        // step (the holder's memory was gone before the signal), so no
        // first-returned-at.
        let signalAt = try #require(deflated.data["signal-at"]?.uint64)
        let deflatedAt = try #require(deflated.data["deflated-at"]?.uint64)
        #expect(signalAt <= deflatedAt)
        #expect(deflated.data["first-returned-at"] == nil)
        let query = try client.value("query")
        #expect(query["actual"]?.uint64 == 64 * MiB)
        #expect(query["pressure"]?["state"]?.string == "backoff")
        #expect(query["pressure"]?["deflated-total"]?.uint64 == 32 * MiB)
        // Nothing regrew from page cache here (no growth after the deflate).
        #expect(query["pressure"]?["regrowth-reclaimed-total"]?.uint64 == 0)
        #expect(query["reason"]?["code"]?.string == "pressure")
        #expect(balloonLocked(daemon.pid) == 64 * MiB)
        #expect(daemon.process.isRunning)
        #expect(daemon.log.contains("OOM killer took a balloon holder"))

        // Deflating gives every chunk back; the holders stay, emptied, as
        // spares for the next growth (ended after SpareHolderTimer.keep, a
        // unit test's business), and lock nothing.
        try client.call("set-target", ["target": 0], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(balloonLocked(daemon.pid) == 0)
        for pid in children(of: daemon.pid) { #expect(statusValue(pid, "VmLck") == 0, "spare \(pid) locks memory") }
        #expect(children(of: daemon.pid).count <= 8)  // ChunkStack.spareLimit
    }

    @Test func holdersDieWithTheDaemon() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=32M\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        let baseline = meminfo("Mlocked")
        var events: [Event] = []
        try client.call("set-target", ["target": .uint(64 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        let holders = children(of: daemon.pid)
        #expect(holders.filter { (statusValue($0, "VmLck") ?? 0) > 0 }.count == 2)
        daemon.signal(SIGKILL)
        _ = daemon.waitForExit()
        #expect(waitUntil { holders.allSatisfy { kill($0, 0) != 0 } }, "a holder outlived the daemon")
        #expect(abs(Int64(meminfo("Mlocked")) - Int64(baseline)) <= Int64(2 * MiB))
    }

    @Test func triggersFallBackToTwoSecondWindowsWithoutCapSysResource() throws {
        let box = try Sandbox(config: "[Pressure]\nLightTrigger=some 50ms 500ms\nHeavyTrigger=full 200ms 2s\nSevereTrigger=off\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        let triggers = try client.value("info")["pressure-triggers"]?.array ?? []
        #expect(triggers.count == 2)
        let light = triggers.first { $0["tier"]?.string == "light" }
        let heavy = triggers.first { $0["tier"]?.string == "heavy" }
        #expect(heavy?["two-second-fallback"]?.bool == false)
        #expect(heavy?["active"]?.string == "full 200ms 2000ms")
        // This machine has no CAP_SYS_RESOURCE: 500 ms windows are refused.
        let capEff = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("CapEff:") }
            .flatMap { UInt64($0.split(separator: "\t").last ?? "", radix: 16) } ?? 0
        if capEff & (1 << 24) == 0 {
            #expect(light?["two-second-fallback"]?.bool == true)
            #expect(light?["active"]?.string == "some 200ms 2000ms")  // same 10% stall share
            #expect(daemon.log.contains("need CAP_SYS_RESOURCE"))
        } else {
            #expect(light?["active"]?.string == "some 50ms 500ms")
        }
        #expect(light?["requested"]?.string == "some 50ms 500ms")
    }

    @Test func anIdleDaemonDoesNotDeflate() throws {
        // With a balloon held and a calm machine: no DEFLATED in 5 s, while
        // the floor timer runs.
        let box = try Sandbox(config: "[Balloon]\nChunkSize=32M\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        _ = daemon
        let client = try RawClient(socket: box.socket)
        try client.sync()
        var events: [Event] = []
        try client.call("set-target", ["target": .uint(64 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        events = []
        #expect(throws: HarnessError.self) { _ = try client.waitForEvent("DEFLATED", timeout: 5, into: &events) }
        #expect(try client.value("query")["pressure"]?["state"]?.string == "calm")
    }
}

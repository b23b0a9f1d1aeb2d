// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// balloond as a real process on a unix socket, real mlock, measured in
/// /proc/meminfo (Mlocked) and VmLck in /proc/PID/status of the daemon and
/// its holder processes (by default each chunk lives in a holder; with
/// HolderProcesses=no, in the daemon itself).
/// `make test` runs this suite alone so nothing else locks memory meanwhile.
@Suite(.serialized) struct InflateAndDeflate {
    /// Inflates to `size`, checks every measure agrees, returns the events.
    func inflate(_ client: RawClient, daemon: DaemonProcess, to size: UInt64, baselineMlocked: UInt64) throws -> [Event] {
        var events: [Event] = []
        let reply = try client.call("set-target", ["target": .uint(size)], events: &events)
        #expect(reply.result.map { $0["target"]?.uint64 } == .success(size))
        let reached = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(reached.data["actual"]?.uint64 == size)
        let vmLck = balloonLocked(daemon.pid)
        let mlocked = meminfo("Mlocked")
        let actual = try client.value("query")["actual"]?.uint64
        // VmLck counts exactly what the balloon's processes locked.
        #expect(vmLck == size, "VmLck \(vmLck) after inflating \(size)")
        #expect(actual == vmLck, "reported actual \(actual ?? 0) vs locked \(vmLck)")
        // Mlocked is system-wide: within ±2% of the inflated amount.
        let delta = Int64(mlocked) - Int64(baselineMlocked)
        #expect(abs(delta - Int64(size)) <= Int64(size) / 50, "Mlocked rose by \(delta), expected \(size)")
        return events
    }

    func deflate(_ client: RawClient, daemon: DaemonProcess, inflated: UInt64, baselineMlocked: UInt64) throws {
        var events: [Event] = []
        try client.call("set-target", ["target": 0], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(balloonLocked(daemon.pid) == 0)
        #expect(try client.value("query")["actual"]?.uint64 == 0)
        let delta = Int64(meminfo("Mlocked")) - Int64(baselineMlocked)
        #expect(abs(delta) <= Int64(inflated) / 50, "Mlocked still \(delta) above baseline after deflate")
    }

    @Test func inflate256MiBThen1GiBAndBack() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=64M\nMemAvailableFloor=256M\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        let baseline = meminfo("Mlocked")
        #expect(balloonLocked(daemon.pid) == 0)

        let events = try inflate(client, daemon: daemon, to: 256 * MiB, baselineMlocked: baseline)
        // Movement events, then the arrival: last BALLOON_CHANGE has the final actual.
        let names = events.map(\.name)
        #expect(names.last == "TARGET_REACHED")
        #expect(names.dropLast().allSatisfy { $0 == "BALLOON_CHANGE" })
        #expect(events.dropLast().last?.data["actual"]?.uint64 == 256 * MiB)
        let actuals = events.compactMap { $0.name == "BALLOON_CHANGE" ? $0.data["actual"]?.uint64 : nil }
        #expect(actuals == actuals.sorted())
        try deflate(client, daemon: daemon, inflated: 256 * MiB, baselineMlocked: baseline)

        _ = try inflate(client, daemon: daemon, to: 1 * GiB, baselineMlocked: baseline)
        try deflate(client, daemon: daemon, inflated: 1 * GiB, baselineMlocked: baseline)

        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    @Test func inProcessChunksShowInTheDaemonsOwnVmLck() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=64M\n[Pressure]\nHolderProcesses=no\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        let baseline = meminfo("Mlocked")
        _ = try inflate(client, daemon: daemon, to: 256 * MiB, baselineMlocked: baseline)
        #expect(statusValue(daemon.pid, "VmLck") == 256 * MiB)
        #expect(children(of: daemon.pid).isEmpty)
        try deflate(client, daemon: daemon, inflated: 256 * MiB, baselineMlocked: baseline)
        #expect(statusValue(daemon.pid, "VmLck") == 0)
    }

    @Test func sigtermDeflatesTellsTheHostAndExitsZero() throws {
        let box = try Sandbox()
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        let baseline = meminfo("Mlocked")
        var events: [Event] = []
        try client.call("set-target", ["target": .uint(128 * MiB)], events: &events)
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(balloonLocked(daemon.pid) == 128 * MiB)

        daemon.signal(SIGTERM)
        events = []
        let change = try client.waitForEvent("BALLOON_CHANGE", into: &events)
        #expect(change.data["actual"]?.uint64 == 0)
        #expect(daemon.waitForExit() == 0)
        #expect(abs(Int64(meminfo("Mlocked")) - Int64(baseline)) <= Int64(128 * MiB) / 50)
        #expect(!FileManager.default.fileExists(atPath: box.socket), "socket file left behind")
    }

    @Test func preemptedByANewTargetMidInflation() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=16M\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        var events: [Event] = []
        // Two requests in one write: the second must be read between chunks.
        let big = Message.request(Request("set-target", arguments: ["target": .uint(1 * GiB)], id: 1)).encoded()
        let small = Message.request(Request("set-target", arguments: ["target": .uint(32 * MiB)], id: 2)).encoded()
        try client.send(big + small)
        let reached = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(reached.data["target"]?.uint64 == 32 * MiB)
        #expect(reached.data["actual"]?.uint64 == 32 * MiB)
        let peak = events.compactMap { $0.data["actual"]?.uint64 }.max() ?? 0
        #expect(peak < 1 * GiB, "the 1 GiB inflation was not preempted (peak \(peak))")
        #expect(balloonLocked(daemon.pid) == 32 * MiB)
    }
}

@Suite(.serialized) struct ProtocolAgainstTheDaemon {
    @Test func syncReplyIsPrecededByResyncByteAndStaleBytesAreDropped() throws {
        let box = try Sandbox()
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        _ = daemon
        let client = try RawClient(socket: box.socket)
        // A partial line left by an earlier host, then the resync.
        try client.send("{\"execute\":\"set-tar")
        try client.sync()
        #expect(try client.value("query")["target"]?.uint64 == 0)
    }

    @Test func errorsNameTheProblemAndTheDaemonKeepsServing() throws {
        let box = try Sandbox()
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()

        func errorFor(_ raw: String) throws -> ProtocolError? {
            try client.send(raw + "\n")
            guard case let .response(r)? = try client.nextMessage() else { return nil }
            if case let .failure(e) = r.result { return e }
            return nil
        }
        #expect(try errorFor("this is not json")?.errorClass == .malformedMessage)
        #expect(try errorFor("[1,2,3]")?.errorClass == .malformedMessage)
        #expect(try errorFor("{\"execute\":\"explode\",\"id\":1}")?.errorClass == .commandNotFound)
        let notANumber = try errorFor("{\"execute\":\"set-target\",\"arguments\":{\"target\":\"lots\"},\"id\":2}")
        #expect(notANumber?.errorClass == .invalidParameter)
        #expect(notANumber?.desc.contains("target") == true)
        let negative = try errorFor("{\"execute\":\"set-target\",\"arguments\":{\"target\":-5},\"id\":3}")
        #expect(negative?.errorClass == .invalidParameter)
        let huge = try errorFor("{\"execute\":\"set-target\",\"arguments\":{\"target\":\(UInt64.max)},\"id\":4}")
        #expect(huge?.errorClass == .invalidParameter)
        #expect(huge?.desc.contains("exceeds the guest's memory") == true)
        #expect(try errorFor("{\"execute\":\"query\",\"arguments\":{\"verbose\":true}}")?.errorClass == .invalidParameter)
        #expect(try errorFor("{\"execute\":\"set-stats-interval\",\"arguments\":{\"interval-ms\":5}}")?.errorClass == .invalidParameter)

        // An over-long line: one LineTooLong error, then business as usual.
        try client.send(String(repeating: "x", count: 200_000) + "\n")
        guard case let .response(r)? = try client.nextMessage(), case let .failure(e) = r.result else {
            Issue.record("no reply to an over-long line"); return
        }
        #expect(e.errorClass == .lineTooLong)
        #expect(r.id == nil)
        #expect(try client.value("query")["state"]?.string == "idle")

        // 0xFF in the middle of a request drops it.
        try client.send([UInt8]("{\"execute\":\"set-target\",\"argu".utf8) + [0xFF])
        #expect(try client.value("query")["target"]?.uint64 == 0)
        #expect(daemon.process.isRunning)
    }

    @Test func newerConnectionReplacesTheOlderOne() throws {
        let box = try Sandbox()
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        _ = daemon
        let first = try RawClient(socket: box.socket)
        try first.sync()
        let second = try RawClient(socket: box.socket)
        try second.sync()
        #expect(throws: HarnessError.self) { _ = try first.nextItem(timeout: 5) }
        #expect(try second.value("info")["protocol"]?.int64 == 1)
    }

    @Test func infoQueryAndStatsAgreeWithProc() throws {
        let box = try Sandbox(config: "[Balloon]\nMaxBalloon=25%\nMemAvailableFloor=300M 1%\nChunkSize=32M\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        _ = daemon
        let client = try RawClient(socket: box.socket)
        try client.sync()
        let total = meminfo("MemTotal")
        let info = try client.value("info")
        #expect(info["memory-total"]?.uint64 == total)
        #expect(info["max-balloon"]?.uint64 == total / 4 / 4096 * 4096)
        #expect(info["mem-available-floor"]?.uint64 == max(300 * MiB, total / 100))
        #expect(info["chunk-size"]?.uint64 == 32 * MiB)
        #expect(info["page-size"]?.uint64 == 4096)
        #expect(info["channel"]?.string == "unix:\(box.socket)")

        let stats = try client.value("stats")
        #expect(stats["stats"]?["total-memory"]?.uint64 == total)
        let available = stats["stats"]?["available-memory"]?.uint64 ?? 0
        #expect(abs(Int64(available) - Int64(meminfo("MemAvailable"))) < Int64(64 * MiB))
        #expect(stats["stats"]?["minor-faults"]?.uint64 ?? 0 > 0)
        #expect(stats["pressure"]?["some"]?["total"]?.uint64 != nil)
        #expect(stats["balloon"]?["actual"]?.uint64 == 0)
        #expect(stats["timestamp"]?["seconds"]?.int64 ?? 0 > 1_700_000_000)

    }

    /// Never more than 1 GiB on the test machine: a fixed 192 MiB maximum.
    @Test func targetAboveMaxBalloonIsClampedAndReported() throws {
        let box = try Sandbox(config: "[Balloon]\nMaxBalloon=192M\nChunkSize=32M\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        var events: [Event] = []
        let reply = try client.call("set-target", ["target": .uint(512 * MiB)], events: &events)
        #expect(reply.result.map { $0["effective-target"]?.uint64 } == .success(192 * MiB))
        let unreachable = try client.waitForEvent("TARGET_UNREACHABLE", into: &events)
        #expect(unreachable.data["reason"]?["code"]?.string == "max-balloon")
        #expect(unreachable.data["actual"]?.uint64 == 192 * MiB)
        #expect(unreachable.data["target"]?.uint64 == 512 * MiB)
        #expect(balloonLocked(daemon.pid) == 192 * MiB)
        let query = try client.value("query")
        #expect(query["state"]?.string == "unreachable")
        #expect(query["reason"]?["code"]?.string == "max-balloon")
        try client.call("set-target", ["target": 0])
        _ = try client.waitForEvent("TARGET_REACHED", into: &events)
        #expect(balloonLocked(daemon.pid) == 0)
    }

    @Test func statsEventsArriveAtTheRequestedInterval() throws {
        let box = try Sandbox()
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        _ = daemon
        let client = try RawClient(socket: box.socket)
        try client.sync()
        #expect(try client.value("set-stats-interval", ["interval-ms": 200])["interval-ms"]?.uint64 == 200)
        var events: [Event] = []
        // Six events, five gaps, on the daemon's own timestamps (not this
        // test's receive times). A tolerance, not a timing goal: the mean gap
        // is the requested 200 ms within a factor of two; 1 s or more is not.
        var stats: [Event] = []
        for _ in 0..<6 { stats.append(try client.waitForEvent("STATS", timeout: 5, into: &events)) }
        #expect(stats.allSatisfy { $0.data["stats"]?["total-memory"] != nil })
        let micros = stats.map { $0.timestamp.seconds * 1_000_000 + $0.timestamp.microseconds }
        let meanGap = (micros.last! - micros.first!) / Int64(micros.count - 1)
        #expect((100_000...400_000).contains(meanGap), "STATS every \(meanGap / 1000) ms on average; asked for 200 ms")
        try client.value("set-stats-interval", ["interval-ms": 0])
        events = []
        #expect(throws: HarnessError.self) { _ = try client.waitForEvent("STATS", timeout: 1, into: &events) }
    }
}

@Suite(.serialized) struct ConfigurationOfTheDaemon {
    @Test func brokenConfigStopsTheDaemonNamingFileLineAndKey() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=64Q\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: nil)
        #expect(daemon.waitForExit() == 78)  // EX_CONFIG
        #expect(daemon.log.contains("\(box.configPath):4"))
        #expect(daemon.log.contains("ChunkSize"))
    }

    @Test func missingExplicitConfigIsAnError() throws {
        let daemon = try DaemonProcess(arguments: ["--config", "/nonexistent/balloond.conf"], waitForSocket: nil)
        #expect(daemon.waitForExit() == 78)
        #expect(daemon.log.contains("/nonexistent/balloond.conf"))
    }

    @Test func dumpConfigShowsEffectiveValuesAndChannelOverride() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=32M\n")
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: productsDirectory + "/balloond")
        p.arguments = ["--config", box.configPath, "--channel", "vsock:9999", "--dump-config"]
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(text.contains("Listen=vsock:9999"))
        #expect(text.contains("ChunkSize=32M"))
        #expect(text.contains("MaxBalloon=80%"))
    }

    /// balloond parses its command line by hand (no swift-argument-parser in
    /// the daemon): the usual forms, and usage errors that name the argument.
    @Test(arguments: [
        (["--bogus"], 64, "Unknown option '--bogus'"),
        (["stray"], 64, "Unexpected argument 'stray'"),
        (["--config"], 64, "Missing value for '--config <PATH>'"),
        (["--channel", "--dump-config"], 64, "Missing value for '--channel <CHANNEL>'"),
        (["--dump-config=yes"], 64, "'--dump-config' takes no value"),
        (["--version"], 0, BalloondVersion.current),
        (["--config", "/nonexistent", "--help"], 0, "USAGE: balloond [--config <PATH>]"),
        (["-h"], 0, "--channel <CHANNEL>"),
    ] as [([String], Int32, String)])
    func commandLine(arguments: [String], status: Int32, output: String) throws {
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: productsDirectory + "/balloond")
        p.arguments = arguments
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == status, "\(arguments): \(text)")
        #expect(text.contains(output), "\(arguments): \(text)")
    }

    @Test func configGivenWithAnEqualsSign() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=16M\n")
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: productsDirectory + "/balloond")
        p.arguments = ["--config=\(box.configPath)", "--channel=unix:/run/x.sock", "--dump-config"]
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(text.contains("ChunkSize=16M"))
        #expect(text.contains("Listen=unix:/run/x.sock"))
    }

    @Test func sighupReloadsAndABadReloadKeepsTheOldConfiguration() throws {
        let box = try Sandbox(config: "[Balloon]\nChunkSize=64M\n")
        let daemon = try DaemonProcess(arguments: ["--config", box.configPath], waitForSocket: box.socket)
        let client = try RawClient(socket: box.socket)
        try client.sync()
        #expect(try client.value("info")["chunk-size"]?.uint64 == 64 * MiB)

        try box.writeConfig("[Balloon]\nChunkSize=16M\n")
        daemon.signal(SIGHUP)
        #expect(try waitUntil { try client.value("info")["chunk-size"]?.uint64 == 16 * MiB })

        try box.writeConfig("[Balloon]\nChunkSize=sixteen\n")
        daemon.signal(SIGHUP)
        #expect(waitUntil { daemon.log.contains("keeping the previous configuration") })
        #expect(daemon.log.contains("ChunkSize"))
        #expect(try client.value("info")["chunk-size"]?.uint64 == 16 * MiB)
        #expect(daemon.process.isRunning)
    }
}

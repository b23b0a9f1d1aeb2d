// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import BalloonConfig

private func parse(_ text: String, file: String = "/etc/balloond.conf") throws(ConfigError) -> BalloondConfig {
    var config = BalloondConfig()
    try ConfigParser.apply(text, file: file, to: &config)
    return config
}

/// One bad input and where its error must point.
struct BadInput: Sendable, CustomTestStringConvertible {
    var name: String
    var text: String
    var line: Int
    var section: String?
    var key: String?
    /// Text the message must contain (the offending value or line, usually).
    var mentions: String

    var testDescription: String { name }
}

@Suite("ConfigParser")
struct ParserTests {
    @Test func emptyTextGivesDefaults() throws {
        #expect(try parse("") == BalloondConfig())
        #expect(try parse("\n\n# only comments\n; and these\n") == BalloondConfig())
    }

    @Test func defaults() {
        let config = BalloondConfig()
        #expect(config.listen == .virtioSerial("org.balloond.0"))
        #expect(config.vsockAllowedCIDs == .cids([2]))
        #expect(config.chunkSize == 64 << 20)
        #expect(config.maxBalloon == .percent(80))
        #expect(config.memAvailableFloor == [.bytes(256 << 20), .percent(3)])
        #expect(config.transparentHugePages == .auto)
        #expect(config.initialTarget == .bytes(0))
        #expect(config.statsInterval == .milliseconds(0))
        #expect(config.logLevel == .info)
    }

    @Test func everyKey() throws {
        let config = try parse("""
            [Channel]
            Listen=vsock:9000
            VsockAllowedCIDs=2, 3 ,42
            [Balloon]
            ChunkSize=128M
            MaxBalloon=6G
            MemAvailableFloor=512M,5% 1G
            TransparentHugePages=off
            InitialTarget=10%
            [Stats]
            Interval=2s
            [Log]
            Level=DEBUG
            """)
        #expect(config.listen == .vsock(port: 9000))
        #expect(config.vsockAllowedCIDs == .cids([2, 3, 42]))
        #expect(config.chunkSize == 128 << 20)
        #expect(config.maxBalloon == .bytes(6 << 30))
        #expect(config.memAvailableFloor == [.bytes(512 << 20), .percent(5), .bytes(1 << 30)])
        #expect(config.transparentHugePages == .no)
        #expect(config.initialTarget == .percent(10))
        #expect(config.statsInterval == .milliseconds(2000))
        #expect(config.logLevel == .debug)
    }

    @Test(arguments: ["yes", "true", "on", "1", "YES", "True"])
    func trueBooleans(text: String) throws {
        var config = BalloondConfig()
        config.transparentHugePages = .no
        try ConfigParser.apply("[Balloon]\nTransparentHugePages=\(text)", file: "f", to: &config)
        #expect(config.transparentHugePages == .yes)
    }

    @Test(arguments: ["auto", "AUTO", "Auto"])
    func autoHugePages(text: String) throws {
        var config = BalloondConfig()
        config.transparentHugePages = .no
        try ConfigParser.apply("[Balloon]\nTransparentHugePages=\(text)", file: "f", to: &config)
        #expect(config.transparentHugePages == .auto)
    }

    @Test(arguments: ["no", "false", "off", "0", "NO", "Off"])
    func falseBooleans(text: String) throws {
        #expect(try parse("[Balloon]\nTransparentHugePages=\(text)").transparentHugePages == .no)
    }

    @Test func vsockAny() throws {
        #expect(try parse("[Channel]\nVsockAllowedCIDs=any").vsockAllowedCIDs == .any)
        #expect(try parse("[Channel]\nVsockAllowedCIDs=ANY").vsockAllowedCIDs == .any)
    }

    @Test func floorIsTheLargest() throws {
        let config = try parse("[Balloon]\nMemAvailableFloor=256M 3%")
        let gib: UInt64 = 1 << 30
        #expect(config.floorBytes(memTotal: 4 * gib) == 256 << 20)  // 3% of 4G is ~123M
        #expect(config.floorBytes(memTotal: 16 * gib) == SizeSpec.percent(3).resolve(memTotal: 16 * gib))
        var empty = config
        empty.memAvailableFloor = []
        #expect(empty.floorBytes(memTotal: gib) == 0)
    }

    @Test func commentsAndWhitespace() throws {
        let config = try parse("""
            # a comment
            ; another comment
               # an indented comment

            \t[Balloon]\t
              ChunkSize   =   32M\t
            MaxBalloon=\t50%
            [Log]
            Level =warning
            """)
        #expect(config.chunkSize == 32 << 20)
        #expect(config.maxBalloon == .percent(50))
        #expect(config.logLevel == .warning)
    }

    @Test func crlfLineEndings() throws {
        let text = "# comment\r\n[Balloon]\r\nChunkSize=32M\r\nMemAvailableFloor=1G 10%\r\n\r\n[Log]\r\nLevel=error\r\n"
        let config = try parse(text)
        #expect(config.chunkSize == 32 << 20)
        #expect(config.memAvailableFloor == [.bytes(1 << 30), .percent(10)])
        #expect(config.logLevel == .error)
        // Line numbers still count CRLF lines.
        #expect(throws: ConfigError(
            file: "f", line: 3, section: "Balloon", key: "Nope",
            message: "unknown key (keys of [Balloon]: ChunkSize, MaxBalloon, MemAvailableFloor, TransparentHugePages, InitialTarget, FrameRescanInterval)")
        ) { try parse("[Balloon]\r\nChunkSize=32M\r\nNope=1\r\n", file: "f") }
    }

    @Test func byteOrderMarkIgnored() throws {
        #expect(try parse("\u{FEFF}[Log]\nLevel=debug\n").logLevel == .debug)
    }

    @Test func repeatedKeyLastWins() throws {
        let config = try parse("[Balloon]\nChunkSize=32M\nChunkSize=16M\n[Log]\nLevel=debug\n[Balloon]\nChunkSize=8M\n")
        #expect(config.chunkSize == 8 << 20)
        #expect(config.logLevel == .debug)
    }

    @Test func emptyValueResetsToDefault() throws {
        var config = BalloondConfig()
        try ConfigParser.apply("""
            [Channel]
            Listen=unix:/tmp/a
            VsockAllowedCIDs=any
            [Balloon]
            ChunkSize=2M
            MaxBalloon=1G
            MemAvailableFloor=1G
            TransparentHugePages=no
            InitialTarget=5%
            [Stats]
            Interval=1s
            [Log]
            Level=trace
            """, file: "a.conf", to: &config)
        #expect(config != BalloondConfig())
        try ConfigParser.apply("""
            [Channel]
            Listen=
            VsockAllowedCIDs=
            [Balloon]
            ChunkSize=
            MaxBalloon=
            MemAvailableFloor=  \t
            TransparentHugePages=
            InitialTarget=
            [Stats]
            Interval=
            [Log]
            Level=
            """, file: "b.conf", to: &config)
        #expect(config == BalloondConfig())
    }

    @Test func errorLeavesConfigUnchanged() {
        var config = BalloondConfig()
        config.logLevel = .debug
        let before = config
        #expect(throws: ConfigError.self) {
            try ConfigParser.apply("[Balloon]\nChunkSize=32M\nMaxBalloon=lots\n", file: "f", to: &config)
        }
        #expect(config == before)
    }

    @Test func statsInterval() throws {
        #expect(try parse("[Stats]\nInterval=0").statsInterval == .milliseconds(0))
        #expect(try parse("[Stats]\nInterval=100ms").statsInterval == .milliseconds(100))
        #expect(try parse("[Stats]\nInterval=10").statsInterval == .milliseconds(10_000))
        #expect(try parse("[Stats]\nInterval=1min").statsInterval == .milliseconds(60_000))
    }

    @Test func frameRescanInterval() throws {
        #expect(try parse("").frameRescanInterval == .milliseconds(60_000))
        #expect(try parse("[Balloon]\nFrameRescanInterval=0").frameRescanInterval == .milliseconds(0))
        #expect(try parse("[Balloon]\nFrameRescanInterval=1s").frameRescanInterval == .milliseconds(1000))
        #expect(try parse("[Balloon]\nFrameRescanInterval=5min").frameRescanInterval == .milliseconds(300_000))
        #expect(try parse("[Balloon]\nFrameRescanInterval=5min\nFrameRescanInterval=").frameRescanInterval == .milliseconds(60_000))
    }

    @Test func pressureSection() throws {
        let c = try parse("""
            [Pressure]
            LightTrigger=full 20ms 2s
            HeavyTrigger=off
            SevereTrigger=some 1s 10s
            LightStep=25%
            FloorMargin=128M
            ReclaimSignals=no
            QuietPeriod=5min
            HolderProcesses=no
            """)
        #expect(c.lightTrigger == PSITriggerSpec(kind: .full, stall: .milliseconds(20), window: .milliseconds(2000)))
        #expect(c.heavyTrigger == nil)
        #expect(c.severeTrigger == PSITriggerSpec(kind: .some, stall: .milliseconds(1000), window: .milliseconds(10_000)))
        #expect(c.lightStepPercent == 25)
        #expect(c.floorMargin == 128 << 20)
        #expect(c.reclaimSignals == false)
        #expect(c.quietPeriod == .milliseconds(300_000))
        #expect(c.holderProcesses == false)
        #expect(c.lightTrigger?.description == "full 20ms 2s")
    }

    @Test func chunkSizeLimits() throws {
        #expect(try parse("[Balloon]\nChunkSize=2M").chunkSize == 2 << 20)
        #expect(try parse("[Balloon]\nChunkSize=1G").chunkSize == 1 << 30)
        #expect(try parse("[Balloon]\nChunkSize=2101248").chunkSize == 2_101_248)  // 2M + 4K
    }

    static let badInputs: [BadInput] = [
        BadInput(name: "unknown key", text: "[Balloon]\nChunkSize=32M\nBalloonSize=1G",
                 line: 3, section: "Balloon", key: "BalloonSize", mentions: "unknown key"),
        BadInput(name: "key in the wrong section", text: "[Log]\nChunkSize=32M",
                 line: 2, section: "Log", key: "ChunkSize", mentions: "belongs in [Balloon]"),
        BadInput(name: "unknown section", text: "# x\n[Memory]\nChunkSize=32M",
                 line: 2, section: "Memory", key: nil, mentions: "unknown section [Memory]"),
        BadInput(name: "section case matters", text: "[balloon]\n",
                 line: 1, section: "balloon", key: nil, mentions: "unknown section [balloon]"),
        BadInput(name: "broken header", text: "[Balloon\nChunkSize=32M",
                 line: 1, section: nil, key: nil, mentions: "\"[Balloon\" is not a section header"),
        BadInput(name: "bad size", text: "[Balloon]\nMaxBalloon=64Q",
                 line: 2, section: "Balloon", key: "MaxBalloon", mentions: "\"64Q\" is not a size (use e.g. 512M, 2G or 25%)"),
        BadInput(name: "bad size in list", text: "[Balloon]\nMemAvailableFloor=256M lots",
                 line: 2, section: "Balloon", key: "MemAvailableFloor", mentions: "\"lots\" is not a size"),
        BadInput(name: "empty list", text: "[Balloon]\nMemAvailableFloor=, ,",
                 line: 2, section: "Balloon", key: "MemAvailableFloor", mentions: "lists no size"),
        BadInput(name: "negative size", text: "[Balloon]\nInitialTarget=-1G",
                 line: 2, section: "Balloon", key: "InitialTarget", mentions: "\"-1G\" is negative"),
        BadInput(name: "percent where not allowed", text: "[Balloon]\nChunkSize=5%",
                 line: 2, section: "Balloon", key: "ChunkSize", mentions: "\"5%\" is a percentage, but this key takes a size"),
        BadInput(name: "percent > 100", text: "[Balloon]\nMaxBalloon=101%",
                 line: 2, section: "Balloon", key: "MaxBalloon", mentions: "\"101%\" is more than 100%"),
        BadInput(name: "percent > 100 in floor", text: "[Balloon]\nMemAvailableFloor=1G 250%",
                 line: 2, section: "Balloon", key: "MemAvailableFloor", mentions: "\"250%\" is more than 100%"),
        BadInput(name: "overflow", text: "[Balloon]\nMaxBalloon=99999999T",
                 line: 2, section: "Balloon", key: "MaxBalloon", mentions: "\"99999999T\" is too large"),
        BadInput(name: "overflow in plain bytes", text: "[Balloon]\nInitialTarget=18446744073709551616",
                 line: 2, section: "Balloon", key: "InitialTarget", mentions: "too large"),
        BadInput(name: "chunk size not page-aligned", text: "[Balloon]\nChunkSize=2097153",
                 line: 2, section: "Balloon", key: "ChunkSize", mentions: "not a multiple of the page size (4096)"),
        BadInput(name: "fractional chunk size not page-aligned", text: "[Balloon]\nChunkSize=2.3M",
                 line: 2, section: "Balloon", key: "ChunkSize", mentions: "not a multiple of the page size"),
        BadInput(name: "chunk size too small", text: "[Balloon]\nChunkSize=1M",
                 line: 2, section: "Balloon", key: "ChunkSize", mentions: "less than the minimum 2M"),
        BadInput(name: "chunk size too big", text: "[Balloon]\nChunkSize=2G",
                 line: 2, section: "Balloon", key: "ChunkSize", mentions: "more than the maximum 1G"),
        BadInput(name: "chunk size zero", text: "[Balloon]\nChunkSize=0",
                 line: 2, section: "Balloon", key: "ChunkSize", mentions: "less than the minimum"),
        BadInput(name: "bad bool", text: "[Balloon]\nTransparentHugePages=maybe",
                 line: 2, section: "Balloon", key: "TransparentHugePages", mentions: "\"maybe\" is not a boolean or auto"),
        BadInput(name: "bad duration", text: "[Stats]\nInterval=10x",
                 line: 2, section: "Stats", key: "Interval", mentions: "\"10x\" is not a duration"),
        BadInput(name: "duration too short", text: "[Stats]\nInterval=50ms",
                 line: 2, section: "Stats", key: "Interval", mentions: "shorter than the minimum 100ms"),
        BadInput(name: "regrowth wait zero", text: "[Pressure]\nRegrowAgainAfter=0",
                 line: 2, section: "Pressure", key: "RegrowAgainAfter", mentions: "\"0\" is shorter than the minimum 1s"),
        BadInput(name: "rescan too short", text: "[Balloon]\nFrameRescanInterval=500ms",
                 line: 2, section: "Balloon", key: "FrameRescanInterval", mentions: "shorter than the minimum 1000ms"),
        BadInput(name: "bad rescan", text: "[Balloon]\nFrameRescanInterval=often",
                 line: 2, section: "Balloon", key: "FrameRescanInterval", mentions: "\"often\" is not a duration"),
        BadInput(name: "trigger kind", text: "[Pressure]\nLightTrigger=most 50ms 500ms",
                 line: 2, section: "Pressure", key: "LightTrigger", mentions: "is not a PSI trigger"),
        BadInput(name: "trigger words", text: "[Pressure]\nHeavyTrigger=full 100ms",
                 line: 2, section: "Pressure", key: "HeavyTrigger", mentions: "is not a PSI trigger"),
        BadInput(name: "trigger window", text: "[Pressure]\nSevereTrigger=full 100ms 20s",
                 line: 2, section: "Pressure", key: "SevereTrigger", mentions: "window must be from 500ms to 10s"),
        BadInput(name: "trigger stall", text: "[Pressure]\nLightTrigger=some 2s 1s",
                 line: 2, section: "Pressure", key: "LightTrigger", mentions: "at most the window"),
        BadInput(name: "light step", text: "[Pressure]\nLightStep=0%",
                 line: 2, section: "Pressure", key: "LightStep", mentions: "whole percentage"),
        BadInput(name: "light step bytes", text: "[Pressure]\nLightStep=64M",
                 line: 2, section: "Pressure", key: "LightStep", mentions: "whole percentage"),
        BadInput(name: "floor margin percent", text: "[Pressure]\nFloorMargin=5%",
                 line: 2, section: "Pressure", key: "FloorMargin", mentions: "%"),
        BadInput(name: "quiet period", text: "[Pressure]\nQuietPeriod=soon",
                 line: 2, section: "Pressure", key: "QuietPeriod", mentions: "is not a duration"),
        BadInput(name: "holders", text: "[Pressure]\nHolderProcesses=sometimes",
                 line: 2, section: "Pressure", key: "HolderProcesses", mentions: "is not a boolean"),
        BadInput(name: "bad channel", text: "[Channel]\nListen=tcp:1234",
                 line: 2, section: "Channel", key: "Listen", mentions: "\"tcp:1234\" is not a channel"),
        BadInput(name: "bad vsock port", text: "[Channel]\nListen=vsock:http",
                 line: 2, section: "Channel", key: "Listen", mentions: "\"vsock:http\" is not a channel"),
        BadInput(name: "bad CID", text: "[Channel]\nVsockAllowedCIDs=2 host",
                 line: 2, section: "Channel", key: "VsockAllowedCIDs", mentions: "\"host\" is not a CID"),
        BadInput(name: "CID too large", text: "[Channel]\nVsockAllowedCIDs=4294967296",
                 line: 2, section: "Channel", key: "VsockAllowedCIDs", mentions: "\"4294967296\" is not a CID"),
        BadInput(name: "CID any mixed", text: "[Channel]\nVsockAllowedCIDs=2 any",
                 line: 2, section: "Channel", key: "VsockAllowedCIDs", mentions: "\"any\" cannot be combined"),
        BadInput(name: "CID VMADDR_CID_ANY", text: "[Channel]\nVsockAllowedCIDs=4294967295",
                 line: 2, section: "Channel", key: "VsockAllowedCIDs", mentions: "VMADDR_CID_ANY"),
        BadInput(name: "bad log level", text: "[Log]\nLevel=loud",
                 line: 2, section: "Log", key: "Level", mentions: "\"loud\" is not a log level"),
        BadInput(name: "key before section", text: "\n# c\nChunkSize=32M\n[Balloon]",
                 line: 3, section: nil, key: "ChunkSize", mentions: "outside any section; it belongs in [Balloon]"),
        BadInput(name: "unknown key before section", text: "Foo=1",
                 line: 1, section: nil, key: "Foo", mentions: "outside any section"),
        BadInput(name: "line without =", text: "[Balloon]\nChunkSize=32M\nChunkSize 32M",
                 line: 3, section: "Balloon", key: nil, mentions: "\"ChunkSize 32M\" is not a Key=Value line"),
        BadInput(name: "line with no key", text: "[Balloon]\n=32M",
                 line: 2, section: "Balloon", key: nil, mentions: "\"=32M\" has no key"),
        BadInput(name: "inline comment is part of the value", text: "[Balloon]\nChunkSize=32M # small",
                 line: 2, section: "Balloon", key: "ChunkSize", mentions: "\"32M # small\" is not a size"),
    ]

    @Test(arguments: badInputs)
    func errorsNameFileLineAndKey(input: BadInput) {
        let file = "/etc/balloond.conf.d/50-test.conf"
        do {
            _ = try parse(input.text, file: file)
            Issue.record("\(input.name): accepted")
        } catch {
            #expect(error.file == file)
            #expect(error.line == input.line)
            #expect(error.section == input.section)
            #expect(error.key == input.key)
            #expect(error.message.contains(input.mentions), "\(error.message)")
            let description = error.description
            #expect(description.hasPrefix("\(file):\(input.line): "), "\(description)")
            if let key = input.key {
                let location = input.section.map { "[\($0)] \(key): " } ?? "\(key): "
                #expect(description.contains(location), "\(description)")
            }
        }
    }

    @Test func exampleMessageFromTheSpec() {
        #expect {
            try parse("[Balloon]\nChunkSize=64Q", file: "/etc/balloond.conf")
        } throws: { error in
            (error as? ConfigError)?.description
                == "/etc/balloond.conf:2: [Balloon] ChunkSize: \"64Q\" is not a size (use e.g. 64M or 2G; no percentages)"
        }
    }
}

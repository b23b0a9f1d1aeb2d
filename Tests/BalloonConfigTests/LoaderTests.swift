// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import BalloonConfig

/// A fresh directory under the system temp dir, removed when the test ends.
final class TempDir {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "balloonconfig-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = path + "/" + name
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: false, encoding: .utf8)
        return file
    }

    func mkdir(_ name: String) throws {
        try FileManager.default.createDirectory(atPath: path + "/" + name, withIntermediateDirectories: true)
    }
}

@Suite("ConfigLoader")
struct LoaderTests {
    @Test func missingDefaultFileGivesDefaults() throws {
        let dir = try TempDir()
        let loaded = try ConfigLoader.load(path: dir.path + "/balloond.conf", required: false)
        #expect(loaded.config == BalloondConfig())
        #expect(loaded.sources.isEmpty)
    }

    @Test func missingRequiredFileIsAnErrorNamingIt() throws {
        let dir = try TempDir()
        let path = dir.path + "/custom.conf"
        #expect(throws: ConfigError(file: path, message: "cannot open: No such file or directory")) {
            try ConfigLoader.load(path: path, required: true)
        }
        do {
            _ = try ConfigLoader.load(path: path, required: true)
        } catch {
            #expect(error.description == "\(path): cannot open: No such file or directory")
        }
    }

    @Test func directoryGivenAsTheFileIsAnErrorNamingIt() throws {
        let dir = try TempDir()
        try dir.mkdir("balloond.conf")
        let path = dir.path + "/balloond.conf"
        for required in [true, false] {
            #expect(throws: ConfigError(file: path, message: "cannot read: Is a directory")) {
                try ConfigLoader.load(path: path, required: required)
            }
        }
    }

    @Test func unreadableDropInDirectoryIsAnErrorNamingIt() throws {
        let dir = try TempDir()
        let main = try dir.write("balloond.conf", "[Log]\nLevel=debug\n")
        try dir.write("balloond.conf.d", "this is a file, not a directory")
        #expect(throws: ConfigError(file: main + ".d", message: "cannot open directory: Not a directory")) {
            try ConfigLoader.load(path: main, required: true)
        }
    }

    @Test func dropInThatIsADanglingSymlinkIsAnErrorNamingIt() throws {
        let dir = try TempDir()
        let main = try dir.write("balloond.conf", "")
        try dir.mkdir("balloond.conf.d")
        let link = main + ".d/10-gone.conf"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: dir.path + "/nowhere")
        #expect(throws: ConfigError(file: link, message: "cannot open: No such file or directory")) {
            try ConfigLoader.load(path: main, required: true)
        }
    }

    @Test func dropInsApplyInLexicographicOrderAndOverride() throws {
        let dir = try TempDir()
        let main = try dir.write("balloond.conf", """
            [Balloon]
            ChunkSize=32M
            MaxBalloon=50%
            [Log]
            Level=notice
            """)
        // Written out of order on purpose; "10" sorts before "9" byte-wise.
        let d20 = try dir.write("balloond.conf.d/20-b.conf", "[Balloon]\nChunkSize=16M\nInitialTarget=1G\n")
        let d10 = try dir.write("balloond.conf.d/10-a.conf", "[Balloon]\nChunkSize=8M\nMaxBalloon=2G\n")
        let d9 = try dir.write("balloond.conf.d/9-last.conf", "[Balloon]\nInitialTarget=\n[Log]\nLevel=error\n")
        let dA = try dir.write("balloond.conf.d/A-upper.conf", "[Stats]\nInterval=5s\n")
        // Not drop-ins: wrong suffix, hidden, a directory.
        try dir.write("balloond.conf.d/30-ignored.conf.disabled", "[Nope]\n")
        try dir.write("balloond.conf.d/.hidden.conf", "[Nope]\n")
        try dir.write("balloond.conf.d/README", "not a config file")
        try dir.mkdir("balloond.conf.d/40-dir.conf")

        let loaded = try ConfigLoader.load(path: main, required: true)
        #expect(loaded.sources == [main, d10, d20, d9, dA])
        var expected = BalloondConfig()
        expected.chunkSize = 16 << 20  // 20-b over 10-a over main
        expected.maxBalloon = .bytes(2 << 30)  // 10-a over main
        expected.initialTarget = .bytes(0)  // set by 20-b, reset by 9-last
        expected.logLevel = .error  // 9-last over main
        expected.statsInterval = .milliseconds(5000)
        #expect(loaded.config == expected)
    }

    @Test func dropInsApplyWithoutTheMainFile() throws {
        let dir = try TempDir()
        let dropIn = try dir.write("balloond.conf.d/50-vsock.conf", "[Channel]\nListen=vsock\nVsockAllowedCIDs=any\n")
        let loaded = try ConfigLoader.load(path: dir.path + "/balloond.conf", required: false)
        #expect(loaded.sources == [dropIn])
        #expect(loaded.config.listen == .vsock(port: 7468))
        #expect(loaded.config.vsockAllowedCIDs == .any)
    }

    @Test func dropInSymlinkedToDevNullIsEmpty() throws {
        let dir = try TempDir()
        try dir.mkdir("balloond.conf.d")
        let link = dir.path + "/balloond.conf.d/10-masked.conf"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/dev/null")
        let loaded = try ConfigLoader.load(path: dir.path + "/balloond.conf", required: false)
        #expect(loaded.config == BalloondConfig())
        #expect(loaded.sources == [link])
    }

    @Test func errorInADropInNamesTheDropIn() throws {
        let dir = try TempDir()
        let main = try dir.write("balloond.conf", "[Balloon]\nChunkSize=32M\n")
        let bad = try dir.write("balloond.conf.d/60-bad.conf", "# comment\n\n[Balloon]\nChunkSize=2.1M\n")
        #expect(throws: ConfigError(
            file: bad, line: 4, section: "Balloon", key: "ChunkSize",
            message: "2.1M (2202009 bytes) is not a multiple of the page size (4096)")
        ) {
            try ConfigLoader.load(path: main, required: true)
        }
    }

    @Test func crlfFileOnDisk() throws {
        let dir = try TempDir()
        let main = try dir.write("balloond.conf", "[Log]\r\nLevel=trace\r\n")
        #expect(try ConfigLoader.load(path: main, required: true).config.logLevel == .trace)
    }

    @Test func invalidUTF8IsAnError() throws {
        let dir = try TempDir()
        let path = dir.path + "/balloond.conf"
        try Data([0x5B, 0x4C, 0x6F, 0x67, 0x5D, 0x0A, 0xFF, 0xFE]).write(to: URL(fileURLWithPath: path))
        #expect(throws: ConfigError(file: path, message: "not valid UTF-8 text")) {
            try ConfigLoader.load(path: path, required: true)
        }
    }

    @Test func fifoIsRefusedWithoutHanging() throws {
        let dir = try TempDir()
        let path = dir.path + "/balloond.conf"
        #expect(mkfifo(path, 0o600) == 0)
        #expect(throws: ConfigError(file: path, message: "cannot read: not a regular file")) {
            try ConfigLoader.load(path: path, required: true)
        }
    }
}

@Suite("Shipped file and render")
struct ShippedFileTests {
    static let shippedPath: String = {
        // Tests/BalloonConfigTests/LoaderTests.swift → repository root.
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("packaging/balloond.conf").path
    }()

    @Test func shippedFileParsesToTheDefaults() throws {
        let text = try String(contentsOfFile: Self.shippedPath, encoding: .utf8)
        var config = BalloondConfig()
        try ConfigParser.apply(text, file: Self.shippedPath, to: &config)
        #expect(config == BalloondConfig())
        #expect(try ConfigLoader.load(path: Self.shippedPath, required: true).config == BalloondConfig())
    }

    /// Uncommenting every key of the shipped file must still give the
    /// defaults: the documented values are the real ones.
    @Test func shippedFileDocumentsEveryKeyWithItsDefault() throws {
        let text = try String(contentsOfFile: Self.shippedPath, encoding: .utf8)
        var uncommented = ""
        var keys: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            // "#Key=value": a commented-out setting (prose comments have a space after "#").
            if line.hasPrefix("#"), line.dropFirst().first?.isUppercase == true, let equals = line.firstIndex(of: "=") {
                keys.append(String(line[line.index(after: line.startIndex)..<equals]))
                uncommented += line.dropFirst() + "\n"
            } else {
                uncommented += line + "\n"
            }
        }
        #expect(keys == ConfigKey.allCases.map(\.name))
        var config = BalloondConfig()
        try ConfigParser.apply(uncommented, file: "uncommented", to: &config)
        #expect(config == BalloondConfig())
        // And it is the same text render produces for each key.
        let rendered = BalloondConfig().render(sources: [])
        for line in rendered.split(separator: "\n") where line.contains("=") && !line.hasPrefix("#") {
            #expect(text.contains("#" + line + "\n"), "shipped file lacks #\(line)")
        }
    }

    static func nonDefault() -> BalloondConfig {
        var config = BalloondConfig()
        config.listen = .unix(path: "/run/balloond/test.sock")
        config.vsockAllowedCIDs = .cids([2, 3, 1000])
        config.chunkSize = 2_101_248
        config.maxBalloon = .bytes(1_610_612_736)
        config.memAvailableFloor = [.percent(2.5), .bytes(123_456_789), .percent(1.0 / 3.0)]
        config.transparentHugePages = .no
        config.initialTarget = .percent(0.00001)
        config.statsInterval = .milliseconds(90_500)
        config.logLevel = .critical
        return config
    }

    @Test(arguments: [
        BalloondConfig(),
        nonDefault(),
        { var c = BalloondConfig(); c.listen = .vsock(port: 4_294_967_294); c.vsockAllowedCIDs = .any; return c }(),
        { var c = BalloondConfig(); c.listen = .virtioSerial("/dev/vport0p1"); c.statsInterval = .milliseconds(3_600_000); return c }(),
    ])
    func renderRoundTrips(config: BalloondConfig) throws {
        let text = config.render(sources: ["/etc/balloond.conf", "/etc/balloond.conf.d/10-x.conf"])
        var parsed = BalloondConfig()
        try ConfigParser.apply(text, file: "rendered", to: &parsed)
        #expect(parsed == config)
        // Every key is present, not only the non-default ones.
        for key in ConfigKey.allCases {
            #expect(text.contains("\n\(key.name)="))
        }
    }

    @Test func renderListsSources() {
        let text = BalloondConfig().render(sources: ["/etc/balloond.conf", "/etc/balloond.conf.d/10-x.conf"])
        #expect(text.hasPrefix("#"))
        #expect(text.contains("#   /etc/balloond.conf\n"))
        #expect(text.contains("#   /etc/balloond.conf.d/10-x.conf\n"))
        let none = BalloondConfig().render(sources: [])
        #expect(none.contains("Built-in defaults only"))
        // A newline in a file name cannot break out of the comment.
        let odd = BalloondConfig().render(sources: ["/tmp/a\n[Log]\nLevel=trace"])
        var parsed = BalloondConfig()
        #expect(throws: Never.self) { try ConfigParser.apply(odd, file: "odd", to: &parsed) }
        #expect(parsed == BalloondConfig())
    }

    @Test func renderOfDefaults() {
        let expected = """
            # balloond: effective configuration (balloond --dump-config)
            # Built-in defaults, then these files in order:
            #   /etc/balloond.conf

            [Channel]
            Listen=virtio-serial:org.balloond.0
            VsockAllowedCIDs=2

            [Balloon]
            ChunkSize=64M
            MaxBalloon=80%
            MemAvailableFloor=256M 3%
            TransparentHugePages=auto
            InitialTarget=0
            FrameRescanInterval=1min

            [Stats]
            Interval=0

            [Pressure]
            LightTrigger=some 20ms 500ms
            HeavyTrigger=full 100ms 1s
            SevereTrigger=full 500ms 1s
            LightStep=10%
            FloorMargin=64M
            ReclaimSignals=yes
            FirstQuietPeriod=15s
            QuietPeriod=30s
            RegrowFreeMemory=yes
            RegrowColdCache=yes
            RegrowAgainAfter=5s
            HolderProcesses=yes
            LockYieldsToHost=yes

            [FreeMemory]
            Allow=yes
            Cushion=auto
            SettleDelay=2s
            ReclaimColdCache=no
            ColdCacheStep=32M

            [Log]
            Level=info

            """
        #expect(BalloondConfig().render(sources: ["/etc/balloond.conf"]) == expected)
    }
}

// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import BalloonConfig

@Suite("SizeSpec")
struct SizeSpecTests {
    @Test(arguments: [
        ("0", 0),
        ("4096", 4096),
        ("4096B", 4096),
        ("1K", 1024),
        ("1k", 1024),
        ("1KiB", 1024),
        ("1kb", 1024),
        ("512M", 512 << 20),
        ("512MiB", 512 << 20),
        ("2G", 2 << 30),
        ("2g", 2 << 30),
        ("2GB", 2 << 30),
        ("1T", 1 << 40),
        ("1.5G", 1_610_612_736),
        ("0.5K", 512),
        ("1.0001K", 1024),  // 1024.1024 rounded down
        ("1.5", 1),
        ("  64M  ", 64 << 20),
        ("16777215T", 16_777_215 << 40),
        ("18446744073709551615", UInt64.max),
    ] as [(String, UInt64)])
    func parsesSizes(text: String, bytes: UInt64) throws {
        #expect(try SizeSpec.parse(text, allowPercent: false) == .bytes(bytes))
        #expect(try SizeSpec.parse(text, allowPercent: true) == .bytes(bytes))
    }

    @Test(arguments: [("25%", 25.0), ("0%", 0), ("100%", 100), ("2.5%", 2.5), ("99.99%", 99.99)] as [(String, Double)])
    func parsesPercentages(text: String, percent: Double) throws {
        #expect(try SizeSpec.parse(text, allowPercent: true) == .percent(percent))
        #expect(throws: SizeSpec.ParseError.percentNotAllowed) { try SizeSpec.parse(text, allowPercent: false) }
    }

    @Test(arguments: [
        ("", SizeSpec.ParseError.empty),
        ("  ", .empty),
        ("64Q", .notASize),
        ("M", .notASize),
        ("G64", .notASize),
        ("1.G", .notASize),
        (".5G", .notASize),
        ("1..5G", .notASize),
        ("1 G", .notASize),
        ("+5M", .notASize),
        ("1e3", .notASize),
        ("0x10", .notASize),
        ("5MM", .notASize),
        ("5iB", .notASize),
        ("abc%", .notASize),
        ("%", .notASize),
        ("nan%", .notASize),
        ("1e2%", .notASize),
        ("-1", .negative),
        ("-5%", .negative),
        ("18446744073709551616", .overflow),
        ("16777216T", .overflow),
        ("99999999999999999999999G", .overflow),
        ("100.01%", .percentOutOfRange),
        ("150%", .percentOutOfRange),
    ] as [(String, SizeSpec.ParseError)])
    func rejects(text: String, error: SizeSpec.ParseError) {
        #expect(throws: error) { try SizeSpec.parse(text, allowPercent: true) }
    }

    @Test func resolve() {
        let gib: UInt64 = 1 << 30
        #expect(SizeSpec.bytes(123).resolve(memTotal: gib) == 123)
        #expect(SizeSpec.percent(25).resolve(memTotal: 4 * gib) == gib)
        #expect(SizeSpec.percent(3).resolve(memTotal: 1000) == 30)
        #expect(SizeSpec.percent(33.3).resolve(memTotal: 1000) == 333)
        #expect(SizeSpec.percent(100).resolve(memTotal: 12345) == 12345)
        #expect(SizeSpec.percent(0).resolve(memTotal: 12345) == 0)
        #expect(SizeSpec.percent(99.9999999).resolve(memTotal: UInt64.max) <= UInt64.max)
    }

    @Test(arguments: [
        (SizeSpec.bytes(0), "0"), (.bytes(4096), "4K"), (.bytes(4097), "4097"), (.bytes(64 << 20), "64M"),
        (.bytes(3 << 30), "3G"), (.bytes(1 << 40), "1T"), (.bytes(1_610_612_736), "1536M"), (.bytes(1 << 50), "1024T"), (.bytes(1536), "1536"),
        (.bytes(UInt64.max), "18446744073709551615"),
        (.percent(80), "80%"), (.percent(2.5), "2.5%"), (.percent(0.00001), "0.00001%"),
        (.percent(1.0 / 3.0), "0.3333333333333333%"),
    ])
    func descriptionRoundTrips(spec: SizeSpec, text: String) throws {
        #expect(spec.description == text)
        #expect(try SizeSpec.parse(spec.description, allowPercent: true) == spec)
    }

    @Test func plainDecimalHasNoExponent() throws {
        for value in [1e-7, 1.25e-5, 0.0001, 99.99999999999, 12.5, 3e-10] {
            let text = plainDecimal(value)
            #expect(!text.contains("e"), "\(value) → \(text)")
            #expect(Double(text) == value)
        }
    }
}

@Suite("ChannelSpec")
struct ChannelSpecTests {
    @Test(arguments: [
        ("virtio-serial:org.balloond.0", ChannelSpec.virtioSerial("org.balloond.0")),
        ("virtio-serial:/dev/vport0p1", .virtioSerial("/dev/vport0p1")),
        ("vsock", .vsock(port: 7468)),
        ("vsock:", .vsock(port: 7468)),
        ("vsock:1024", .vsock(port: 1024)),
        ("vsock:4294967294", .vsock(port: 4_294_967_294)),
        ("unix:/run/balloond.sock", .unix(path: "/run/balloond.sock")),
        ("unix:relative.sock", .unix(path: "relative.sock")),
        ("  unix:/tmp/x  ", .unix(path: "/tmp/x")),
    ])
    func parses(text: String, channel: ChannelSpec) throws {
        #expect(try ChannelSpec.parse(text) == channel)
        #expect(try ChannelSpec.parse(channel.description) == channel)
    }

    @Test(arguments: [
        "", "tcp:1234", "virtio-serial", "virtio-serial:", "virtio-serial:a/b", "vsock:x", "vsock:-1",
        "vsock:4294967295", "vsock:4294967296", "vsock: 5", "unix:", "unix: /x",
        "unix:/" + String(repeating: "a", count: 107), "unix:/a\tb", "/dev/virtio-ports/x", "VSOCK:5",
    ])
    func rejects(text: String) {
        #expect(throws: ConfigError.self) { try ChannelSpec.parse(text) }
        do {
            _ = try ChannelSpec.parse(text)
        } catch {
            #expect(error.file == "")
            #expect(error.line == nil)
            #expect(error.message.contains("is not a channel"))
        }
    }

    @Test func devicePath() {
        #expect(ChannelSpec.virtioSerial("org.balloond.0").devicePath == "/dev/virtio-ports/org.balloond.0")
        #expect(ChannelSpec.virtioSerial("/dev/vport1p1").devicePath == "/dev/vport1p1")
        #expect(ChannelSpec.vsock(port: 1).devicePath == nil)
        #expect(ChannelSpec.unix(path: "/x").devicePath == nil)
    }

    @Test func unixPathLimit() throws {
        let path = "/" + String(repeating: "a", count: 106)  // 107 bytes: fits sun_path with its NUL
        #expect(try ChannelSpec.parse("unix:" + path) == .unix(path: path))
    }
}

@Suite("Other values")
struct OtherValueTests {
    @Test func vsockPeers() {
        #expect(VsockPeers.any.allows(3))
        #expect(VsockPeers.cids([2, 5]).allows(5))
        #expect(!VsockPeers.cids([2]).allows(3))
        #expect(!VsockPeers.cids([]).allows(2))
    }

    @Test(arguments: [
        ("0", 0), ("10s", 10_000), ("500ms", 500), ("1min", 60_000), ("5", 5000), ("1.5", 1500),
        ("0.1s", 100), ("2m", 120_000), ("1h", 3_600_000), ("1min 30s", 90_000), ("1min30s", 90_000),
        ("10 sec", 10_000), ("250msec", 250), ("2 minutes", 120_000), ("0s", 0), ("1.2345s", 1234),
    ] as [(String, UInt64)])
    func durations(text: String, milliseconds: UInt64) {
        #expect(parseDuration(text) == Duration(configMilliseconds: milliseconds))
    }

    @Test(arguments: ["", "s", "10x", "-1s", "1 2", "5s 3", "1e3", "1.s", "10s,", "99999999999999999999h"])
    func badDurations(text: String) {
        #expect(parseDuration(text) == nil)
    }

    @Test(arguments: [0, 100, 999, 1000, 1500, 60_000, 90_000, 3_600_000, 7_200_500] as [UInt64])
    func durationRendersBack(milliseconds: UInt64) {
        #expect(parseDuration(renderDuration(Duration(configMilliseconds: milliseconds))) == Duration(configMilliseconds: milliseconds))
    }

    @Test func logLevelsAreTheDocumentedOnes() {
        #expect(LogLevel.allCases.map(\.rawValue) == ["trace", "debug", "info", "notice", "warning", "error", "critical"])
    }

    @Test func errorDescription() {
        let error = ConfigError(
            file: "/etc/balloond.conf", line: 12, section: "Balloon", key: "ChunkSize",
            message: "\"64Q\" is not a size (use e.g. 64M or 2G; no percentages)")
        #expect(error.description == "/etc/balloond.conf:12: [Balloon] ChunkSize: \"64Q\" is not a size (use e.g. 64M or 2G; no percentages)")
        #expect(ConfigError(file: "/x", message: "cannot open: No such file or directory").description
            == "/x: cannot open: No such file or directory")
        #expect(ConfigError(file: "", message: "bad").description == "bad")
    }
}

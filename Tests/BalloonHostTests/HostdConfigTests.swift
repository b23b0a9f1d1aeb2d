// SPDX-License-Identifier: Apache-2.0
@testable import BalloonConfig
import BalloonPolicy
import BalloonTestSupport
import Foundation
import Testing

/// balloon-hostd's files: the same strict syntax and error style as
/// balloond.conf (one parser), the [Guest] files, --dump-config.
@Suite struct HostdConfigFiles {
    @Test func mainFileKeysAndDefaults() throws {
        var config = HostdConfig()
        try HostdLoader.parseHost(
            """
            # a comment
            [Host]
            Control=/run/x/control
            HostMemory=2G
            ControlGroup=balloon-ops
            [Policy]
            Mode=proxmox
            HostReserve=10%
            Interval=5s
            MaxStep=100M
            StatsInterval=500ms
            [Discovery]
            Libvirt=no
            Directories=/run/vms, /srv/sockets
            """, file: "h.conf", into: &config)
        #expect(config.control == "/run/x/control")
        #expect(config.hostMemory == 2 << 30)
        #expect(config.controlGroup == "balloon-ops")
        #expect(config.mode == .proxmox)
        #expect(config.hostReserve == .percent(10))
        #expect(config.interval == .seconds(5))
        #expect(config.maxStep == 100 << 20)
        #expect(config.statsInterval == .milliseconds(500))
        #expect(!config.libvirt)
        #expect(config.directories == ["/run/vms", "/srv/sockets"])
        #expect(config.policySettings(hostTotal: 10 << 30) == PolicySettings(mode: .proxmox, hostReserve: 1 << 30, interval: .seconds(5), maxStep: 100 << 20))
        // Key= puts the default back, as in balloond.conf.
        try HostdLoader.parseHost("[Policy]\nMode=\nInterval=auto\n[Host]\nHostMemory=none\n", file: "h.conf", into: &config)
        #expect(config.mode == .auto && config.interval == nil && config.hostMemory == nil)
    }

    /// `HeadroomBoost=` sets auto's boost limit; `auto` (or nothing) keeps the policy's 2.
    @Test func headroomBoost() throws {
        var config = HostdConfig()
        #expect(config.policySettings(hostTotal: 8 << 30).tuning.boostLimit == 2)
        try HostdLoader.parseHost("[Policy]\nHeadroomBoost=1.5\n", file: "h.conf", into: &config)
        #expect(config.headroomBoost == 1.5)
        #expect(config.policySettings(hostTotal: 8 << 30).tuning.boostLimit == 1.5)
        var again = HostdConfig()
        try HostdLoader.parseHost(HostdLoader.render(HostdSetup(config: config)), file: "dump", into: &again)
        #expect(again.headroomBoost == 1.5)
        try HostdLoader.parseHost("[Policy]\nHeadroomBoost=auto\n", file: "h.conf", into: &config)
        #expect(config.headroomBoost == nil)
    }

    /// `BurstYield=` turns auto's yield to a burst off (on by default) and survives `--dump-config`.
    @Test func burstYield() throws {
        var config = HostdConfig()
        #expect(config.policySettings(hostTotal: 8 << 30).tuning.burstYield)
        try HostdLoader.parseHost("[Policy]\nBurstYield=no\n", file: "h.conf", into: &config)
        #expect(!config.policySettings(hostTotal: 8 << 30).tuning.burstYield)
        var again = HostdConfig()
        try HostdLoader.parseHost(HostdLoader.render(HostdSetup(config: config)), file: "dump", into: &again)
        #expect(!again.burstYield)
        #expect(throws: ConfigError.self) { try HostdLoader.parseHost("[Policy]\nBurstYield=often\n", file: "h.conf", into: &config) }
    }

    /// `SpareStalledCache=` and `BurstHoldGrowth=` (off by default) reach auto's tuning and survive `--dump-config`.
    @Test(arguments: [("SpareStalledCache", \AutoTuning.spareStalledCache), ("BurstHoldGrowth", \AutoTuning.burstHoldGrowth)])
    func offByDefault(key: String, knob: KeyPath<AutoTuning, Bool> & Sendable) throws {
        var config = HostdConfig()
        #expect(!config.policySettings(hostTotal: 8 << 30).tuning[keyPath: knob])
        try HostdLoader.parseHost("[Policy]\n\(key)=yes\n", file: "h.conf", into: &config)
        #expect(config.policySettings(hostTotal: 8 << 30).tuning[keyPath: knob])
        var again = HostdConfig()
        try HostdLoader.parseHost(HostdLoader.render(HostdSetup(config: config)), file: "dump", into: &again)
        #expect(again.policySettings(hostTotal: 8 << 30).tuning[keyPath: knob])
        #expect(throws: ConfigError.self) { try HostdLoader.parseHost("[Policy]\n\(key)=often\n", file: "h.conf", into: &config) }
    }

    /// `RefaultRate=` (2500 by default) reaches auto's tuning, survives `--dump-config`; 0 turns the signal off.
    @Test func refaultRate() throws {
        var config = HostdConfig()
        #expect(config.policySettings(hostTotal: 8 << 30).tuning.refaultsPerSecond == 2_500)
        try HostdLoader.parseHost("[Policy]\nRefaultRate=0\n", file: "h.conf", into: &config)
        #expect(config.policySettings(hostTotal: 8 << 30).tuning.refaultsPerSecond == 0)
        var again = HostdConfig()
        try HostdLoader.parseHost(HostdLoader.render(HostdSetup(config: config)), file: "dump", into: &again)
        #expect(again.refaultRate == 0)
        for bad in ["-1", "2.5k", "1e4", "+5", "10000001"] {
            #expect(throws: ConfigError.self) { try HostdLoader.parseHost("[Policy]\nRefaultRate=\(bad)\n", file: "h.conf", into: &config) }
        }
    }

    /// `BurstLinger=` (0 by default) reaches auto's tuning, survives `--dump-config`, and is at most 60 s.
    @Test func burstLinger() throws {
        var config = HostdConfig()
        #expect(config.policySettings(hostTotal: 8 << 30).tuning.burstLinger == .zero)
        try HostdLoader.parseHost("[Policy]\nBurstLinger=2500ms\n", file: "h.conf", into: &config)
        #expect(config.policySettings(hostTotal: 8 << 30).tuning.burstLinger == .milliseconds(2500))
        var again = HostdConfig()
        try HostdLoader.parseHost(HostdLoader.render(HostdSetup(config: config)), file: "dump", into: &again)
        #expect(again.burstLinger == .milliseconds(2500))
        #expect(throws: ConfigError.self) { try HostdLoader.parseHost("[Policy]\nBurstLinger=2min\n", file: "h.conf", into: &config) }
        #expect(throws: ConfigError.self) { try HostdLoader.parseHost("[Policy]\nBurstLinger=soon\n", file: "h.conf", into: &config) }
    }

    @Test(arguments: [
        ("[Policy]\nMode=fast\n", "h.conf:2: [Policy] Mode: \"fast\" is not one of auto, proxmox, mom, manual"),
        ("[Host]\nControl=run/x\n", "h.conf:2: [Host] Control: \"run/x\" is not an absolute path"),
        ("[Host]\nControlGroup=a b\n", "h.conf:2: [Host] ControlGroup: \"a b\" is not a group name (letters, digits, _ - .) or number; none = no group"),
        ("[Host]\nControlGroup=-x\n", "h.conf:2: [Host] ControlGroup: \"-x\" is not a group name"),
        ("[Guest]\nMin=1G\n", "h.conf:1: unknown section [Guest] (known sections: [Host], [Policy], [Discovery], [Metrics])"),
        ("Mode=auto\n", "h.conf:1: Mode: key outside any section; it belongs in [Policy]"),
        ("[Host]\nMode=auto\n", "h.conf:2: [Host] Mode: unknown key in [Host]; it belongs in [Policy]"),
        ("[Policy]\nHeadroomBoost=0.5\n", "h.conf:2: [Policy] HeadroomBoost: \"0.5\" is outside 1…16"),
        ("[Policy]\nHeadroomBoost=lots\n", "h.conf:2: [Policy] HeadroomBoost: \"lots\" is not a number (use e.g. 2, 1.5, 1 for none, or auto)"),
        ("[Policy]\nHeadroomBoost=1e1\n", "h.conf:2: [Policy] HeadroomBoost: \"1e1\" is not a number (use e.g. 2, 1.5, 1 for none, or auto)"),
        ("[Policy]\nHeadroomBoost=0x2\n", "h.conf:2: [Policy] HeadroomBoost: \"0x2\" is not a number (use e.g. 2, 1.5, 1 for none, or auto)"),
        ("[Policy]\nHeadroomBoost=inf\n", "h.conf:2: [Policy] HeadroomBoost: \"inf\" is not a number (use e.g. 2, 1.5, 1 for none, or auto)"),
        ("[Policy]\nHeadroomBoost=2.\n", "h.conf:2: [Policy] HeadroomBoost: \"2.\" is not a number (use e.g. 2, 1.5, 1 for none, or auto)"),
        ("[Policy]\nInterval=50ms\n", "h.conf:2: [Policy] Interval: \"50ms\" is shorter than the minimum 100ms"),
        ("[Policy]\nStatsInterval=10ms\n", "h.conf:2: [Policy] StatsInterval: \"10ms\" is outside 100ms…1h"),
        ("[Policy\n", "h.conf:1: \"[Policy\" is not a section header (write e.g. [Host] alone on its line)"),
        ("[Metrics]\nListen=9468\n", "h.conf:2: [Metrics] Listen: \"9468\" has no :PORT"),
        ("[Metrics]\nListen=localhost:9468\n", "h.conf:2: [Metrics] Listen: \"localhost:9468\": \"localhost\" is not an IP address"),
        ("[Metrics]\nListen=::1:9468\n", "h.conf:2: [Metrics] Listen: \"::1:9468\": \"::1\" is not an IP address (IPv6 in brackets"),
        ("[Metrics]\nListen=[127.0.0.1]:9468\n", "h.conf:2: [Metrics] Listen: \"[127.0.0.1]:9468\": \"127.0.0.1\" is not an IP address"),
        ("[Metrics]\nListen=127.0.0.256:9468\n", "h.conf:2: [Metrics] Listen: \"127.0.0.256:9468\": \"127.0.0.256\" is not an IP address"),
        ("[Metrics]\nListen=127.0.0.1:65536\n", "h.conf:2: [Metrics] Listen: \"127.0.0.1:65536\": \"65536\" is not a port number"),
        ("[Metrics]\nListen=[::1:9468\n", "h.conf:2: [Metrics] Listen: \"[::1:9468\": \"[::1\" is not an IP address"),
    ])
    func mainFileErrors(text: String, message: String) {
        var config = HostdConfig()
        #expect(throws: ConfigError.self) { try HostdLoader.parseHost(text, file: "h.conf", into: &config) }
        do { try HostdLoader.parseHost(text, file: "h.conf", into: &config) } catch {
            // Only the start: StatsInterval's upper bound is the protocol's.
            #expect(error.description.hasPrefix(String(message.prefix(while: { $0 != "…" }))), "\(error)")
        }
        #expect(config == HostdConfig())
    }

    /// `[Metrics] Listen=`: IPv4, bracketed IPv6, a unix path, or no; the
    /// default is loopback port 9468, and --dump-config writes it back.
    @Test func metricsListen() throws {
        #expect(HostdConfig().metricsListen == .tcp(address: .v4([127, 0, 0, 1]), port: 9468))
        #expect(HostdConfig().metricsListen.description == "127.0.0.1:9468")
        for (text, expected, rendered) in [
            ("no", MetricsListen.off, "no"),
            ("0.0.0.0:9100", .tcp(address: .v4([0, 0, 0, 0]), port: 9100), "0.0.0.0:9100"),
            ("[::1]:9468", .tcp(address: .v6(Array(repeating: 0, count: 15) + [1]), port: 9468), "[::1]:9468"),
            ("[::]:0", .tcp(address: .v6(Array(repeating: 0, count: 16)), port: 0), "[::]:0"),
            ("[FE80:0:0:0:1:0:0:2]:1", .tcp(address: .v6([0xFE, 0x80] + Array(repeating: 0, count: 6) + [0, 1, 0, 0, 0, 0, 0, 2]), port: 1), "[fe80::1:0:0:2]:1"),
            ("/run/balloon-hostd/metrics", .unix(path: "/run/balloon-hostd/metrics"), "/run/balloon-hostd/metrics"),
        ] {
            var config = HostdConfig()
            try HostdLoader.parseHost("[Metrics]\nListen=\(text)\n", file: "h.conf", into: &config)
            #expect(config.metricsListen == expected, "\(text)")
            #expect(config.metricsListen.description == rendered)
            // What --dump-config writes reads back the same.
            var again = HostdConfig()
            try HostdLoader.parseHost(HostdLoader.render(HostdSetup(config: config)), file: "dump", into: &again)
            #expect(again == config)
        }
        #expect(HostdLoader.render(HostdSetup()).contains("[Metrics]\nListen=127.0.0.1:9468\n"))
    }

    @Test func guestFile() throws {
        let g = try HostdLoader.parseGuest(
            "[Guest]\nChannel=hybrid-vsock:/run/fc/v.sock:7468\nMemoryBackend=/dev/shm/vm1\nRamMap=q35\nRamSize=4G\nMin=1G\nMax=90%\nShares=2000\nPolicy=manual\nTarget=512M\nFreeMemoryReporting=yes\nPopulateOnDeflate=yes\n",
            file: "vm1.conf")
        #expect(g.channel == .hybridVsock(path: "/run/fc/v.sock", port: 7468))
        #expect(g.memoryBackend == "/dev/shm/vm1" && g.ramMap == "q35" && g.ramSize == 4 << 30)
        #expect(g.min == .bytes(1 << 30) && g.max == .percent(90) && g.shares == 2000 && g.policy == .manual)
        #expect(g.target == 512 << 20 && g.freeMemoryReporting && g.populateOnDeflate == .yes)
        #expect(try HostdLoader.parseGuest("[Guest]\nChannel=unix:/run/a.sock\n", file: "f").populateOnDeflate == .belowTarget)
        #expect(try HostdLoader.parseGuest("[Guest]\nChannel=unix:/run/a.sock\nPopulateOnDeflate=off\n", file: "f").populateOnDeflate == .no)
        #expect(try HostdLoader.parseGuest("[Guest]\nChannel=unix:/run/a.sock\nPopulateOnDeflate=below-target\n", file: "f").populateOnDeflate == .belowTarget)
        #expect(try HostdLoader.parseGuest("[Guest]\nChannel=vsock:3:7468\n", file: "f").channel == .vsock(cid: 3, port: 7468))
        #expect(try HostdLoader.parseGuest("[Guest]\nChannel=unix:/run/a.sock\n", file: "f").channel == .unix(path: "/run/a.sock"))
    }

    @Test(arguments: [
        ("[Guest]\nMin=1G\n", "g.conf: [Guest] Channel: required"),
        ("[Guest]\nChannel=vsock:2:7468\n", "g.conf:2: [Guest] Channel: \"vsock:2:7468\" is not a guest vsock address"),
        ("[Guest]\nChannel=tcp:1\n", "g.conf:2: [Guest] Channel: \"tcp:1\" is not a guest channel"),
        ("[Guest]\nChannel=unix:/a\nShares=0\n", "g.conf:3: [Guest] Shares: \"0\" is not a whole number from 1 to 50000"),
        ("[Guest]\nChannel=unix:/a\nPolicy=sometimes\n", "g.conf:3: [Guest] Policy: \"sometimes\" is not one of auto, manual, off"),
        ("[Host]\nControl=/a\n", "g.conf:1: unknown section [Host] (known sections: [Guest])"),
        ("[Guest]\nChannel=unix:/a\nPopulateOnDeflate=sometimes\n", "g.conf:3: [Guest] PopulateOnDeflate: \"sometimes\" is not yes, no or below-target"),
    ])
    func guestFileErrors(text: String, message: String) {
        do {
            _ = try HostdLoader.parseGuest(text, file: "g.conf")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.hasPrefix(message), "\(error)")
        }
    }

    @Test func loaderReadsGuestDirectoryAndDumpReadsBack() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let guests = dir.path + "/d"
        mkdir(guests, 0o755)
        defer { for f in ["vm1.conf", "vm2.conf", "notes.txt"] { unlink(guests + "/" + f) }; rmdir(guests) }
        try "[Host]\nGuestDirectory=\(guests)\n[Policy]\nMode=mom\n".write(toFile: dir.path + "/h.conf", atomically: false, encoding: .utf8)
        try "[Guest]\nChannel=unix:/run/vm1.sock\nMin=512M\nPopulateOnDeflate=no\n".write(toFile: guests + "/vm1.conf", atomically: false, encoding: .utf8)
        try "[Guest]\nChannel=vsock:5:7468\nPolicy=off\n".write(toFile: guests + "/vm2.conf", atomically: false, encoding: .utf8)
        try "not a config".write(toFile: guests + "/notes.txt", atomically: false, encoding: .utf8)
        let setup = try HostdLoader.load(path: dir.path + "/h.conf", required: true)
        #expect(setup.config.mode == .mom)
        #expect(setup.guests.keys.sorted() == ["vm1", "vm2"])
        #expect(setup.guests["vm2"]?.policy == .off)
        #expect(setup.sources == [dir.path + "/h.conf", guests + "/vm1.conf", guests + "/vm2.conf"])

        // --dump-config's text parses back to the same setup.
        let dump = HostdLoader.render(setup)
        let parts = dump.components(separatedBy: "\n# ")
        var config = HostdConfig()
        try HostdLoader.parseHost(parts[0], file: "dump", into: &config)
        #expect(config == setup.config)
        for part in parts.dropFirst() {
            let name = String(part.prefix { $0 != "\n" }.split(separator: "/").last!.dropLast(5))
            #expect(try HostdLoader.parseGuest(String(part.drop { $0 != "\n" }), file: "dump") == setup.guests[name])
        }

        // A missing --config file is an error; the default location may be absent.
        #expect(throws: ConfigError.self) { try HostdLoader.load(path: dir.path + "/none.conf", required: true) }
        #expect(try HostdLoader.load(path: dir.path + "/none.conf", required: false).config == HostdConfig())
        #expect(!HostdLoader.isValidName(".hidden") && !HostdLoader.isValidName("a b") && HostdLoader.isValidName("vm-1.prod_2"))
    }

    @Test func shippedFileIsTheDefaults() throws {
        var config = HostdConfig()
        try HostdLoader.parseHost(try RepoFiles.text("packaging/balloon-hostd.conf"), file: "packaging/balloon-hostd.conf", into: &config)
        #expect(config == HostdConfig())
        // Every key is in the shipped file (commented, with its default) and in docs/hostd.md.
        let shipped = try RepoFiles.text("packaging/balloon-hostd.conf")
        let docs = try RepoFiles.text("docs/hostd.md")
        for key in HostdKeys.host {
            #expect(shipped.contains("#\(key.name)=\(key.render(HostdConfig()))"), "\(key.name) is not in the shipped file with its default")
        }
        for (section, name, _) in HostdLoader.documentedKeys {
            #expect(docs.contains("`\(name)=`"), "[\(section)] \(name) is not in docs/hostd.md")
        }
    }
}

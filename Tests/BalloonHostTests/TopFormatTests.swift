// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import Testing

/// `balloonctl top`'s pure parts: what a guest's text may not do to a
/// terminal, the sort, and the frame.
@Suite struct TopFormat {
    @Test func escapesAndControlsAreStripped() {
        #expect(HostFormat.terminalSafe("web1") == "web1")
        #expect(HostFormat.terminalSafe("caf\u{E9} \u{1F388}") == "caf\u{E9} \u{1F388}")
        // CSI (colour, cursor, clear screen) and the C1 form, dropped whole.
        #expect(HostFormat.terminalSafe("a\u{1B}[31mred\u{1B}[0m") == "ared")
        #expect(HostFormat.terminalSafe("x\u{1B}[2J\u{1B}[Hy") == "xy")
        #expect(HostFormat.terminalSafe("x\u{9B}1;2Hy") == "xy")
        // OSC (window title, hyperlinks) ended by BEL or ST, and unterminated.
        #expect(HostFormat.terminalSafe("a\u{1B}]0;owned\u{07}b") == "ab")
        #expect(HostFormat.terminalSafe("a\u{1B}]8;;http://x\u{1B}\\link\u{1B}]8;;\u{1B}\\b") == "alinkb")
        #expect(HostFormat.terminalSafe("a\u{1B}]0;never ends") == "a")
        // Two-character escapes (ESC c resets the terminal), a lone ESC at the end.
        #expect(HostFormat.terminalSafe("a\u{1B}cb\u{1B}") == "ab")
        // Other controls, DEL, C1 and bidirectional overrides become '?'.
        #expect(HostFormat.terminalSafe("a\rb\nc\u{08}d\u{7F}e\u{85}f") == "a?b?c?d?e?f")
        #expect(HostFormat.terminalSafe("x\u{202E}gnp.exe") == "x?gnp.exe")
        #expect(HostFormat.terminalSafe("\u{2066}a\u{2069}") == "?a?")
    }

    static func guest(_ name: String, connected: Bool = true, target: UInt64? = nil, actual: UInt64? = nil, freed: UInt64 = 0, psi: Double? = nil) -> GuestSummary {
        var g = GuestSummary(name: name, channel: "unix:/run/\(name)", source: "config", connected: connected, policy: .auto)
        g.target = target
        g.actual = actual
        g.bytesFreed = freed
        g.psiSomeAvg10 = psi
        return g
    }

    @Test func sorting() {
        let guests = [Self.guest("b", actual: 1 << 30, freed: 5), Self.guest("a", connected: false, freed: 9), Self.guest("c", actual: 2 << 30, freed: 5)]
        #expect(HostFormat.sorted(guests, by: .name).map(\.name) == ["a", "b", "c"])
        #expect(HostFormat.sorted(guests, by: .name, reverse: true).map(\.name) == ["c", "b", "a"])
        // Sizes largest first, ties by name, unknown last (also reversed).
        #expect(HostFormat.sorted(guests, by: .actual).map(\.name) == ["c", "b", "a"])
        #expect(HostFormat.sorted(guests, by: .actual, reverse: true).map(\.name) == ["b", "c", "a"])
        #expect(HostFormat.sorted(guests, by: .freed).map(\.name) == ["a", "b", "c"])
        #expect(HostFormat.sorted(guests, by: .state).map(\.name) == ["a", "b", "c"])  // "down" < "up"
        // Held: by the guest's code from A, a balloon not held last (also reversed).
        var held = guests
        held[0].held = StopReason(code: .pressure, desc: "PSI some 12.0 > 10.0")
        held[2].held = StopReason(code: .maxBalloon, desc: "MaxBalloon=16M")
        #expect(HostFormat.sorted(held, by: .held).map(\.name) == ["c", "b", "a"])
        #expect(HostFormat.sorted(held, by: .held, reverse: true).map(\.name) == ["b", "c", "a"])
        #expect(TopColumn.name.next == .state && TopColumn.actual.next == .held && TopColumn.freed.next == .name)
        #expect(TopColumn(rawValue: "psi-some") == .psiSome)
    }

    @Test func frame() throws {
        var evil = Self.guest("db1", target: 512 << 20, actual: 384 << 20, freed: 384 << 20, psi: 2.314)
        evil.reason = "guest says \u{1B}[2Jhi\u{07}"
        evil.held = StopReason(code: .memAvailableFloor, desc: "MemAvailable would fall below 64 MiB")
        let guests = [evil, Self.guest("web1", connected: false)]
        let policy = PolicyStatusReply(
            mode: "auto", interval: .seconds(1), hostTotal: 8 << 30, hostAvailable: 6 << 30, hostReserve: 512 << 20, budget: false,
            rounds: 3, targetsSet: 1)
        let text = HostFormat.topFrame(guests: guests, policy: policy, view: TopView(sort: .freed, keys: true))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0] == "balloon-hostd: 2 guests (1 up), freed 384 MiB, policy auto every 1 s; host 8 GiB, available 6 GiB, reserve 512 MiB")
        #expect(lines[1] == "sorted by freed, every 2 s; keys: s sort by the next column, r reverse, q quit")
        #expect(lines[3].hasPrefix("NAME  STATE  POLICY  RAM ") && lines[3].hasSuffix("FREED  LAST CHANGE"))
        #expect(lines[3].contains("  ACTUAL  ") && lines[3].contains("  HELD  "))
        #expect(lines[4].hasPrefix("db1 ") && lines[4].hasSuffix("384 MiB  guest says hi?"))
        #expect(lines[4].contains(" mem-available-floor "))
        #expect(lines[5].hasPrefix("web1") && lines[5].contains("down"))
        #expect(!text.contains("\u{1B}") && !text.contains("\u{07}"))
        // Cut to the terminal's width; no keys line off a terminal.
        let narrow = HostFormat.topFrame(guests: guests, policy: nil, view: TopView(width: 20))
        #expect(narrow.split(separator: "\n").allSatisfy { $0.count <= 20 })
        #expect(!narrow.contains("keys:"))
        #expect(HostFormat.topFrame(guests: [], policy: nil, view: TopView()).hasSuffix("\n\nno guests\n"))
        #expect(HostFormat.topFrame(guests: [], policy: nil, view: TopView(), error: "refused\u{1B}[H").hasSuffix("no answer from the agent: refused\n"))
        let json = HostFormat.topJSON(guests: guests, policy: nil, sort: .name, reverse: true)
        #expect(try GuestListReply(json: json).guests.map(\.name) == ["web1", "db1"])
    }
}

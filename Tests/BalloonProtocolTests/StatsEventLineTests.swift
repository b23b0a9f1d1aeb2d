// SPDX-License-Identifier: Apache-2.0
import BalloonStats
import BalloonTestSupport
import Testing

@testable import BalloonProtocol

/// The STATS fast path (StatsEventLine.swift) against the general decoder:
/// it takes balloond's own lines, and whatever it takes decodes the same way.
@Suite struct StatsEventLineTests {
    /// What `Message.decode` and `GuestEvent` make of a line, if a STATS event.
    static func general(_ line: [UInt8]) -> StatsReply? {
        guard case let .event(event)? = try? Message.decode(line), case let .stats(reply)? = try? GuestEvent(event) else { return nil }
        return reply
    }

    static func line(_ reply: StatsReply) -> [UInt8] {
        var bytes = Message.event(GuestEvent.stats(reply).event(at: Timestamp(seconds: 1_795_000_001, microseconds: 7))).encoded()
        bytes.removeLast()  // the framer hands lines over without their newline
        return bytes
    }

    static func reply(_ rng: inout SeededRandom) -> StatsReply {
        var stats = VirtioStats()
        for stat in VirtioStat.allCases where Bool.random(using: &rng) { stats[stat] = rng.next() >> (rng.next() % 64) }
        func psi() -> PressureLine? {
            guard rng.next() % 4 != 0 else { return nil }
            return PressureLine(
                avg10: Double(rng.next() % 10_000) / 100, avg60: Double(rng.next() % 3), avg300: Double(rng.next() % 1000) / 7,
                total: rng.next())
        }
        let pressure = rng.next() % 5 == 0 ? nil : Pressure(some: psi(), full: psi())
        return StatsReply(
            stats: stats, pressure: pressure, balloonTarget: rng.next(), balloonActual: rng.next() >> 20,
            freeMemoryHeld: rng.next() % 3 == 0 ? 0 : rng.next() >> 30,
            memAvailableFloor: rng.next() % 3 == 0 ? nil : rng.next() >> 28,
            fileRefaults: rng.next() % 3 == 0 ? nil : rng.next() >> (rng.next() % 64),
            timestamp: Timestamp(seconds: Int64(bitPattern: rng.next()), microseconds: Int64(rng.next() % 1_000_000)))
    }

    @Test func takesWhatBalloondSends() {
        var rng = SeededRandom(seed: 11)
        for _ in 0..<500 {
            let reply = Self.reply(&rng)
            let line = Self.line(reply)
            #expect(StatsReply(statsEventLine: line) == reply, "\(String(decoding: line, as: UTF8.self))")
            #expect(Self.general(line) == reply)
        }
    }

    @Test func takesOtherPlainForms() throws {
        let text = #"""
             { "timestamp" : {"microseconds":5, "seconds":-3}, "data": {"balloon": {"actual": 0, "target": 10,
            "free-memory-held": null}, "timestamp": {"seconds": 1, "microseconds": 2}, "pressure": {"full": null,
            "some": {"total": 0, "avg300": 1, "avg60": -0.0, "avg10": 12.5}}, "stats": {"available-memory": 0,
            "total-memory": 18446744073709551615}}, "event": "STATS" }\#r\#t
            """#
        let line = Array(text.utf8)
        let fast = try #require(StatsReply(statsEventLine: line))
        #expect(fast == Self.general(line))
        #expect(fast.stats[.totalMemory] == .max)
        #expect(fast.pressure?.some?.avg10 == 12.5)
        #expect(fast.pressure?.full == nil)
        #expect(fast.freeMemoryHeld == 0)
        #expect(fast.memAvailableFloor == nil)
        let floors = [
            (#""mem-available-floor":268435456,"#, UInt64?.some(268_435_456)), (#""mem-available-floor": null ,"#, nil),
            ("", nil),
        ]
        for (member, floor) in floors {
            let text = #"{"event":"STATS","data":{"stats":{},"balloon":{"#
                + member + #""target":1,"actual":2},"timestamp":{"seconds":1,"microseconds":2}}}"#
            let fast = try #require(StatsReply(statsEventLine: Array(text.utf8)))
            #expect(fast.memAvailableFloor == floor, "\(text)")
            #expect(fast == Self.general(Array(text.utf8)))
        }
        let noPressure = #"{"event":"STATS","data":{"stats":{},"balloon":{"target":1,"actual":2},"timestamp":{"seconds":1,"microseconds":2}}}"#
        #expect(StatsReply(statsEventLine: Array(noPressure.utf8)) == Self.general(Array(noPressure.utf8)))
        #expect(StatsReply(statsEventLine: Array(noPressure.utf8))?.pressure == nil)
    }

    /// Lines the fast path leaves to the general decoder, valid or not.
    @Test func leavesTheRestToTheGeneralDecoder() {
        let base = #"{"event":"STATS","data":{"stats":{"total-memory":1},"balloon":{"target":1,"actual":2},"timestamp":{"seconds":1,"microseconds":2}},"timestamp":{"seconds":1,"microseconds":2}}"#
        #expect(StatsReply(statsEventLine: Array(base.utf8)) != nil)
        let others = [
            base.replacingFirst(#""event":"STATS""#, #""event":"BALLOON_CHANGE""#),
            base.replacingFirst(#""event":"STATS""#, #""event":"STAT\u0053""#),  // an escape: valid, the general path's
            base.replacingFirst(#""total-memory":1"#, #""total-memory":1e0"#),
            base.replacingFirst(#""total-memory":1"#, #""total-memory":1.0"#),
            base.replacingFirst(#""total-memory":1"#, #""total-memory":-0"#),
            base.replacingFirst(#""total-memory":1"#, #""total-memory":01"#),
            base.replacingFirst(#""total-memory":1"#, #""total-memory":18446744073709551616"#),
            base.replacingFirst(#""total-memory":1"#, #""newer-stat":1"#),
            base.replacingFirst(#""total-memory":1"#, #""total-memory":1,"total-memory":2"#),
            base.replacingFirst(#""target":1"#, #""target":1,"target":1"#),
            base.replacingFirst(#""target":1"#, #""target":"1""#),
            base.replacingFirst(#""target":1"#, #""target":1,"mem-available-floor":1,"mem-available-floor":1"#),
            base.replacingFirst(#""target":1"#, #""target":1,"mem-available-floor":-1"#),
            base.replacingFirst(#"{"event""#, #"{"id":1,"event""#),
            base.replacingFirst(#"{"event""#, #"{"return":{},"event""#),
            base.replacingFirst(#""data":{"#, #""data":{"extra":0,"#),
            base.replacingFirst(#","balloon":{"target":1,"actual":2}"#, ""),
            base + " x",
            String(base.dropLast()),
            "",
            "{}",
        ]
        for text in others {
            #expect(StatsReply(statsEventLine: Array(text.utf8)) == nil, "\(text)")
        }
    }

    /// Mutated lines: whatever the fast path still takes, the general
    /// decoder reads as the same STATS event.
    @Test func neverDisagreesWithTheGeneralDecoder() {
        var rng = SeededRandom(seed: 1111)
        let alphabet = Array(#"{}[]":,.-+eE0123456789 \nulltruefalse"#.utf8)
        var taken = 0
        for _ in 0..<3000 {
            var line = Self.line(Self.reply(&rng))
            for _ in 0...(rng.next() % 3) {
                let at = Int(rng.next() % UInt64(line.count))
                switch rng.next() % 3 {
                case 0: line.remove(at: at)
                case 1: line[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                default: line.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                }
            }
            guard let fast = StatsReply(statsEventLine: line) else { continue }
            taken += 1
            #expect(fast == Self.general(line), "\(String(decoding: line, as: UTF8.self))")
        }
        // Some mutations keep the line valid (a digit for a digit): the
        // comparison above is not vacuous.
        #expect(taken > 100)
    }
}

extension String {
    fileprivate func replacingFirst(_ old: String, _ new: String) -> String {
        let bytes = Array(utf8), o = Array(old.utf8)
        for i in 0...(bytes.count - o.count) where bytes[i..<(i + o.count)].elementsEqual(o) {
            return String(decoding: bytes[..<i] + Array(new.utf8) + bytes[(i + o.count)...], as: UTF8.self)
        }
        fatalError("\(old) not in \(self)")
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonTestSupport
import Testing

@testable import BalloonStats

@Suite("Malformed input")
struct MalformedInputTests {
    @Test func emptyInput() {
        #expect(ProcParse.meminfo([UInt8]()).isEmpty)
        #expect(ProcParse.vmstat([UInt8]()).isEmpty)
        #expect(ProcParse.pressure([UInt8]()) == Pressure())
        #expect(ProcParse.meminfo([UInt8]("\n\n\r\n")).isEmpty)
        #expect(ProcParse.vmstat([UInt8]("\n \n\t\n")).isEmpty)
    }

    @Test func truncatedAndMissingValues() {
        let m = ProcParse.meminfo([UInt8]("MemTotal:\nMemFree: \nMemAvail\n:123 kB\nCached: kB\nBuffers: 7 kB\nActive: 12"))
        #expect(m == ["Buffers": 7 * KiB, "Active": 12])
        let v = ProcParse.vmstat([UInt8]("pgfault\npgmajfault \n 5\npswpin 3\nnr_fi"))
        #expect(v == ["pswpin": 3])
    }

    @Test func nonDigitValues() {
        let m = ProcParse.meminfo([UInt8]("A: 12a4 kB\nB: x kB\nC: -5 kB\nD: 1.5 kB\nE: 5 MB\nF: 5 kBx\nG: 5 kB 6\nH: 9 kB\n"))
        #expect(m == ["H": 9 * KiB])
        let v = ProcParse.vmstat([UInt8]("a x\nb -5\nc 12 34\nd 0x10\ne 1e3\nf +4\ng 42\n"))
        #expect(v == ["g": 42])
    }

    @Test func hugeNumbersDoNotTrap() {
        let v = ProcParse.vmstat([UInt8](
            "max 18446744073709551615\nover 18446744073709551616\nway_over 99999999999999999999999999\nok 1\n"))
        #expect(v["max"] == UInt64.max)
        #expect(v["over"] == nil)  // unparseable: absent, not wrong
        #expect(v["way_over"] == nil)
        #expect(v["ok"] == 1)

        let m = ProcParse.meminfo([UInt8](
            "Max: 18446744073709551615 kB\nEdge: 18014398509481984 kB\nBelow: 18014398509481983 kB\n"
                + "Plain: 18446744073709551615\nOver: 18446744073709551616 kB\n"))
        #expect(m["Max"] == UInt64.max)  // kB scaling saturates
        #expect(m["Edge"] == UInt64.max)  // 2^54 * 1024 == 2^64
        #expect(m["Below"] == (18_014_398_509_481_983 as UInt64) * 1024)
        #expect(m["Plain"] == UInt64.max)
        #expect(m["Over"] == nil)

        let s = VirtioStats(
            meminfo: [:], vmstat: ["pswpin": .max, "pgscan_kswapd_dma": .max, "pgscan_kswapd_normal": 5,
                                   "allocstall_dma": .max, "allocstall_normal": 1],
            pageSize: 4096)
        #expect(s[.swapIn] == .max)
        #expect(s[.asyncScans] == .max)
        #expect(s[.allocStalls] == .max)
    }

    @Test func crlfLineEndings() {
        let m = ProcParse.meminfo([UInt8]("MemTotal:  100 kB\r\nMemFree: 50 kB\r\nHugePages_Total: 3\r\n"))
        #expect(m == ["MemTotal": 100 * KiB, "MemFree": 50 * KiB, "HugePages_Total": 3])
        let v = ProcParse.vmstat([UInt8]("pgfault 10\r\npgmajfault 2\r\n"))
        #expect(v == ["pgfault": 10, "pgmajfault": 2])
        let p = ProcParse.pressure([UInt8]("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\r\n"))
        #expect(p.some == PressureLine(avg10: 1, avg60: 2, avg300: 3, total: 4))
    }

    @Test func lastLineWithoutNewline() {
        #expect(ProcParse.vmstat([UInt8]("pgfault 5\npgmajfault 7")) == ["pgfault": 5, "pgmajfault": 7])
        #expect(ProcParse.meminfo([UInt8]("MemTotal: 8 kB")) == ["MemTotal": 8 * KiB])
        let p = ProcParse.pressure([UInt8]("some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=2"))
        #expect(p.full?.total == 2)
    }

    @Test func tabsAndExtraBlanks() {
        #expect(ProcParse.meminfo([UInt8]("MemTotal:\t\t8\tkB\t\n")) == ["MemTotal": 8 * KiB])
        #expect(ProcParse.vmstat([UInt8]("pgfault\t5  \n")) == ["pgfault": 5])
    }

    @Test func nonASCIIOrControlKeysAreSkipped() {
        let bytes: [UInt8] = Array("M\u{e9}m: 5 kB\n".utf8) + [0x00, 0x3A, 0x20, 0x35, 0x0A] + Array("Ok: 1\n".utf8)
        #expect(ProcParse.meminfo(bytes) == ["Ok": 1])
        let v: [UInt8] = [0xFF, 0xFE, 0x20, 0x31, 0x0A] + Array("ok 2\n".utf8)
        #expect(ProcParse.vmstat(v) == ["ok": 2])
    }

    @Test func duplicateKeysKeepLast() {
        #expect(ProcParse.vmstat([UInt8]("a 1\na 2\na bad\n")) == ["a": 2])
    }

    @Test func binaryGarbageNeverCrashesAndYieldsOnlySaneKeys() {
        var rng = SeededRandom(seed: 0x6261_6c6c_6f6f_6e64)
        let alphabet: [UInt8] = Array("0123456789 :\t\r\n=.kBsomefullavgtotal_".utf8)
        for round in 0..<2000 {
            let n = Int(rng.next() % 512)
            var bytes = [UInt8](repeating: 0, count: n)
            for i in 0..<n {
                // Half the rounds use any byte value, half a /proc-like alphabet
                // that produces many near-miss lines.
                let r = rng.next()
                bytes[i] = round % 2 == 0 ? UInt8(truncatingIfNeeded: r) : alphabet[Int(r % UInt64(alphabet.count))]
            }
            for (key, _) in ProcParse.meminfo(bytes) {
                #expect(!key.isEmpty && key.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F })
            }
            for (key, _) in ProcParse.vmstat(bytes) {
                #expect(!key.isEmpty && key.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F })
            }
            let p = ProcParse.pressure(bytes)
            for line in [p.some, p.full].compactMap({ $0 }) {
                #expect(line.avg10 >= 0 && line.avg60 >= 0 && line.avg300 >= 0)
            }
            _ = VirtioStats(meminfo: bytes, vmstat: bytes, pageSize: 4096)
        }
    }

    @Test func garbageBetweenValidLinesDoesNotHideThem() {
        var bytes = Array("MemTotal: 100 kB\n".utf8)
        bytes += [0x00, 0xFF, 0x80, 0x0A, 0x3A, 0x3A, 0x0A]
        bytes += Array("MemFree: 50 kB\n".utf8)
        #expect(ProcParse.meminfo(bytes) == ["MemTotal": 100 * KiB, "MemFree": 50 * KiB])
    }

    @Test func pressureMalformedLinesAreSkipped() {
        let cases = [
            "some avg10=abc avg60=0.00 avg300=0.00 total=0",
            "some avg10=0.00 avg60=0.00 avg300=0.00",  // no total
            "some avg10=1.2.3 avg60=0.00 avg300=0.00 total=0",
            "some avg10=-1.00 avg60=0.00 avg300=0.00 total=0",
            "some avg10=1. avg60=0.00 avg300=0.00 total=0",
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=18446744073709551616",
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=5x",
            "some avg10 avg60=0.00 avg300=0.00 total=0",
            "some",
            "somе avg10=0.00 avg60=0.00 avg300=0.00 total=0",  // Cyrillic e
        ]
        for c in cases {
            #expect(ProcParse.pressure([UInt8](c + "\n")).some == nil, "\(c)")
        }
        // Unknown lines are ignored; unknown fields too.
        let p = ProcParse.pressure([UInt8](
            "other avg10=1.00 avg60=1.00 avg300=1.00 total=1\nsome avg10=1.00 avg60=2.00 avg300=3.00 total=4 extra=zz\n"))
        #expect(p.some == PressureLine(avg10: 1, avg60: 2, avg300: 3, total: 4))
        #expect(p.full == nil)
    }
}

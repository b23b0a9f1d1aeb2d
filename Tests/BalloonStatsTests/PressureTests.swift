// SPDX-License-Identifier: Apache-2.0
import Testing

@testable import BalloonStats

@Suite("PSI parsing")
struct PressureTests {
    @Test func someAndFullWithDecimalsAndLargeTotals() {
        let text = """
            some avg10=1.23 avg60=45.67 avg300=100.00 total=123456789012
            full avg10=0.05 avg60=0.10 avg300=99.99 total=18446744073709551615

            """
        let p = ProcParse.pressure([UInt8](text))
        #expect(p.some == PressureLine(avg10: 1.23, avg60: 45.67, avg300: 100.0, total: 123_456_789_012))
        #expect(p.full == PressureLine(avg10: 0.05, avg60: 0.10, avg300: 99.99, total: .max))
    }

    @Test func decimalsAreExactlyTheLiterals() {
        // Every value PSI can print ("%lu.%02lu", 0.00 ... 100.00) parses to
        // the same Double as the corresponding Swift literal.
        for hundredths in 0...10_000 {
            let s = "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
            let p = ProcParse.pressure([UInt8]("some avg10=\(s) avg60=0 avg300=0 total=0\n"))
            #expect(p.some?.avg10 == Double(s)!, "\(s)")
        }
    }

    @Test func cpuFileWithOnlySomeLine() {
        // /proc/pressure/cpu before 5.13 has no "full" line.
        let p = ProcParse.pressure([UInt8]("some avg10=2.93 avg60=3.17 avg300=3.15 total=94628150260\n"))
        #expect(p.some == PressureLine(avg10: 2.93, avg60: 3.17, avg300: 3.15, total: 94_628_150_260))
        #expect(p.full == nil)
    }

    @Test func fieldOrderDoesNotMatter() {
        let p = ProcParse.pressure([UInt8]("full total=7 avg300=0.30 avg60=0.60 avg10=0.10\n"))
        #expect(p.full == PressureLine(avg10: 0.10, avg60: 0.60, avg300: 0.30, total: 7))
        #expect(p.some == nil)
    }

    @Test func rawBufferOverload() {
        let bytes = [UInt8]("some avg10=0.50 avg60=0.25 avg300=0.12 total=99\n")
        let p = bytes.withUnsafeBytes { ProcParse.pressure($0) }
        #expect(p.some == PressureLine(avg10: 0.5, avg60: 0.25, avg300: 0.12, total: 99))
    }
}

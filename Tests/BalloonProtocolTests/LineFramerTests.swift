// SPDX-License-Identifier: Apache-2.0
import BalloonTestSupport
import Testing
import BalloonProtocol

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private func lines(_ items: [LineFramer.Item]) -> [String] {
    items.compactMap { if case let .line(l) = $0 { return String(decoding: l, as: UTF8.self) } else { return nil } }
}

@Suite("LineFramer")
struct LineFramerTests {
    @Test func wholeLinesInOneFeed() {
        var framer = LineFramer()
        let items = framer.feed(bytes("{\"a\":1}\n{\"b\":2}\n"))
        #expect(items == [.line(bytes("{\"a\":1}")), .line(bytes("{\"b\":2}"))])
        #expect(framer.bufferedBytes == 0)
    }

    @Test func partialLineIsHeldUntilItsNewline() {
        var framer = LineFramer()
        #expect(framer.feed(bytes("{\"exec")) == [])
        #expect(framer.bufferedBytes == 6)
        #expect(framer.feed(bytes("ute\":\"x\"}\n{")) == [.line(bytes("{\"execute\":\"x\"}"))])
        #expect(framer.bufferedBytes == 1)
    }

    @Test("a stream split at every byte boundary yields the same lines")
    func splitAtEveryBoundary() {
        let stream = bytes("{\"execute\":\"sync\",\"id\":1}\r\n\n  \n{\"return\":\"é🎈\"}\n") + [0xFF] + bytes("{\"event\":\"X\"}\n")
        var whole = LineFramer()
        let expected = whole.feed(stream)
        #expect(lines(expected) == ["{\"execute\":\"sync\",\"id\":1}", "{\"return\":\"é🎈\"}", "{\"event\":\"X\"}"])
        for cut in 0...stream.count {
            var framer = LineFramer()
            let items = framer.feed(stream[..<cut]) + framer.feed(stream[cut...])
            #expect(items == expected, "cut at \(cut)")
        }
        // Two cuts, and one byte at a time.
        for a in stride(from: 0, through: stream.count, by: 3) {
            for b in a...stream.count {
                var framer = LineFramer()
                let items = framer.feed(stream[..<a]) + framer.feed(stream[a..<b]) + framer.feed(stream[b...])
                #expect(items == expected, "cuts at \(a), \(b)")
            }
        }
        var framer = LineFramer()
        #expect(stream.flatMap { framer.feed([$0]) } == expected)
    }

    @Test func crlfIsAccepted() {
        var framer = LineFramer()
        #expect(framer.feed(bytes("{}\r\n")) == [.line(bytes("{}"))])
        // A CR split from its LF.
        #expect(framer.feed(bytes("[1]\r")) == [])
        #expect(framer.feed(bytes("\n")) == [.line(bytes("[1]"))])
        // A CR inside a line is kept; only the one before LF goes.
        #expect(framer.feed(bytes("a\rb\r\r\n")) == [.line(bytes("a\rb\r"))])
    }

    @Test func blankLinesAreIgnored() {
        var framer = LineFramer()
        #expect(framer.feed(bytes("\n\r\n \t \n\n{}\n\n")) == [.line(bytes("{}"))])
        #expect(framer.bufferedBytes == 0)
    }

    @Test func resyncInTheMiddleOfALineDropsThePartialLine() {
        var framer = LineFramer()
        let items = framer.feed(bytes("{\"execute\":\"sta") + [0xFF] + bytes("{\"execute\":\"query\"}\n"))
        #expect(items == [.resync(dropped: 15), .line(bytes("{\"execute\":\"query\"}"))])
        // Across feeds.
        #expect(framer.feed(bytes("garbage")) == [])
        #expect(framer.feed([0xFF]) == [.resync(dropped: 7)])
        #expect(framer.bufferedBytes == 0)
        #expect(framer.feed(bytes("{}\n")) == [.line(bytes("{}"))])
    }

    @Test func resyncBetweenLines() {
        var framer = LineFramer()
        let items = framer.feed(bytes("{}\n") + [0xFF, 0xFF] + bytes("[]\n") + [0xFF])
        #expect(items == [.line(bytes("{}")), .resync(dropped: 0), .resync(dropped: 0), .line(bytes("[]")), .resync(dropped: 0)])
    }

    @Test func resyncBetweenCRAndLF() {
        var framer = LineFramer()
        #expect(framer.feed(bytes("{}\r") + [0xFF] + bytes("\n[]\n")) == [.resync(dropped: 3), .line(bytes("[]"))])
    }

    @Test func overLongLineIsReportedOnceAndSkippedToItsNewline() {
        var framer = LineFramer(maxLineBytes: 16)
        let long = [UInt8](repeating: UInt8(ascii: "x"), count: 100)
        var items = framer.feed(long)
        #expect(items == [.tooLong(limit: 16)])
        #expect(framer.bufferedBytes <= 16)
        // More of the same line: not reported again.
        items = framer.feed(long + long)
        #expect(items == [])
        items = framer.feed(bytes("tail\n{\"ok\":1}\n"))
        #expect(items == [.line(bytes("{\"ok\":1}"))], "the next line is delivered intact")
    }

    @Test func lineAtExactlyTheLimitIsAccepted() {
        let limit = 16
        let exact = [UInt8](repeating: UInt8(ascii: "a"), count: limit)
        var framer = LineFramer(maxLineBytes: limit)
        #expect(framer.feed(exact + [0x0A]) == [.line(exact)])
        #expect(framer.feed(exact + [0x61, 0x0A]) == [.tooLong(limit: limit)])
        #expect(framer.feed(exact + [0x0D, 0x0A]) == [.line(exact)], "the CR of CRLF is not part of the line")
        #expect(framer.feed(exact + [0x0D, 0x0D, 0x0A]) == [.tooLong(limit: limit)])
        #expect(framer.feed(exact + [0x0D, 0x61, 0x0A]) == [.tooLong(limit: limit)])
        #expect(framer.feed(bytes("{}\n")) == [.line(bytes("{}"))])
    }

    @Test func defaultLimitIsTheDocumentedOne() {
        #expect(LineFramer.defaultMaxLineBytes == 65_536)
        var framer = LineFramer()
        let exact = [UInt8](repeating: UInt8(ascii: " "), count: 65_535) + [UInt8(ascii: "1")]
        #expect(framer.feed(exact + [0x0A]) == [.line(exact)])
        #expect(framer.feed(exact + bytes("2\n3\n")) == [.tooLong(limit: 65_536), .line(bytes("3"))])
    }

    @Test func overLongLineInterruptedByResync() {
        var framer = LineFramer(maxLineBytes: 8)
        var items = framer.feed(bytes("0123456789abcdef"))
        #expect(items == [.tooLong(limit: 8)])
        // 0xFF ends the skipping: what follows is a new line, no newline needed first.
        items = framer.feed([0xFF] + bytes("{\"a\":1}\n"))
        #expect(items == [.resync(dropped: 0), .line(bytes("{\"a\":1}"))])
        // And a new over-long line is reported again.
        #expect(framer.feed(bytes("0123456789\n")) == [.tooLong(limit: 8)])
    }

    @Test("memory stays bounded while megabytes arrive without a newline")
    func boundedMemory() {
        let limit = 65_536
        var framer = LineFramer(maxLineBytes: limit)
        var rng = SeededRandom(seed: 99)
        var reports = 0
        var maxBuffered = 0
        for _ in 0..<64 {
            // 64 × 64 KiB = 4 MiB of bytes that are neither 0x0A nor 0xFF.
            let chunk = (0..<65_536).map { _ in UInt8.random(in: 0x0B...0xFE, using: &rng) }
            for item in framer.feed(chunk) {
                if case .tooLong = item { reports += 1 } else { Issue.record("unexpected \(item)") }
            }
            maxBuffered = max(maxBuffered, framer.bufferedBytes)
        }
        #expect(reports == 1)
        #expect(maxBuffered <= limit)
        #expect(framer.bufferedBytes <= limit)
        #expect(framer.feed(bytes("\n{}\n")) == [.line(bytes("{}"))])
        #expect(framer.bufferedBytes == 0)
    }

    @Test func bufferedBytesNeverExceedsTheLimitByteByByte() {
        var framer = LineFramer(maxLineBytes: 32)
        var rng = SeededRandom(seed: 5)
        for _ in 0..<20_000 {
            // CRs included: a held CR must not push the buffer past the limit.
            let byte: UInt8 = [0x0D, 0x61, 0x61, 0x61, 0x0A, 0xFF].randomElement(using: &rng)!
            _ = framer.feed([byte])
            #expect(framer.bufferedBytes <= 32)
        }
    }
}

/// The buffer overload (what a read gives, copied in runs) against the byte
/// by byte one, on random streams of lines, CRs, resyncs and overlong lines
/// cut into random reads.
@Suite struct LineFramerBufferTests {
    @Test func bufferFeedMatchesByteFeed() {
        var rng = SeededRandom(seed: 7)
        let alphabet: [UInt8] = [0x0A, 0x0D, 0xFF, 0x20, 0x09, UInt8(ascii: "a"), UInt8(ascii: "{"), UInt8(ascii: "}")]
        for round in 0..<400 {
            let max = Int(rng.next() % 24) + 1
            var stream: [UInt8] = []
            for _ in 0..<Int(rng.next() % 300) {
                // Mostly ordinary bytes, so runs of every length against the bound.
                stream.append(rng.next() % 3 == 0 ? alphabet[Int(rng.next() % UInt64(alphabet.count))] : UInt8(ascii: "x"))
            }
            var bytewise = LineFramer(maxLineBytes: max)
            var buffered = LineFramer(maxLineBytes: max)
            var expected: [LineFramer.Item] = []
            var got: [LineFramer.Item] = []
            var at = 0
            while at < stream.count {
                let n = min(stream.count - at, Int(rng.next() % 40) + 1)
                let chunk = Array(stream[at..<(at + n)])
                expected += bytewise.feed(chunk.lazy.map { $0 })
                got += chunk.withUnsafeBytes { buffered.feed($0) }
                #expect(buffered.bufferedBytes == bytewise.bufferedBytes)
                at += n
            }
            #expect(got == expected, "round \(round), bound \(max)")
        }
    }
}

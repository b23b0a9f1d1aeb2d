// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import Testing

/// A peer's text made safe to print (PrintableText.swift).
@Suite struct PrintableTextTests {
    @Test func plainTextIsUnchanged() {
        for text in ["", "target exceeds memory-total (6 GiB)", "Grüße, 気球 ✓", "a\\u{1B} spelled out"] {
            #expect(PrintableText.escape(text) == text)
        }
    }

    @Test func controlCharactersAreEscaped() {
        #expect(PrintableText.escape("a\u{1B}[2Jb") == "a\\u{1B}[2Jb")
        #expect(PrintableText.escape("line\nforged") == "line\\u{A}forged")
        #expect(PrintableText.escape("\r\t\u{0}\u{7F}") == "\\u{D}\\u{9}\\u{0}\\u{7F}")
        #expect(PrintableText.escape("\u{9B}31m\u{85}") == "\\u{9B}31m\\u{85}")  // C1: CSI, NEL
    }

    @Test func bidirectionalControlsAreEscaped() {
        #expect(PrintableText.escape("abc\u{202E}fdp.exe") == "abc\\u{202E}fdp.exe")
        #expect(PrintableText.escape("\u{2066}x\u{2069}\u{200F}\u{61C}") == "\\u{2066}x\\u{2069}\\u{200F}\\u{61C}")
    }

    /// A guest's error and stop reason, decoded from the wire, print escaped.
    @Test func aPeersErrorAndReasonPrintEscaped() throws {
        let line = Array(#"{"error":{"class":"GenericError","desc":"\u001b]0;x\u0007 no"},"id":1}"#.utf8)
        guard case let .response(r) = try Message.decode(line), case let .failure(error) = r.result else {
            Issue.record("not an error response")
            return
        }
        #expect(error.desc == "\u{1B}]0;x\u{7} no")  // kept as sent
        #expect(error.description == "GenericError: \\u{1B}]0;x\\u{7} no")
        let reason = StopReason(code: .maxBalloon, desc: "\u{1B}[2J")
        #expect(reason.description == "max-balloon: \\u{1B}[2J")
    }
}

/// JSON output escapes C1 and bidirectional controls too, and reads back the same.
@Suite struct JSONPrintableTests {
    @Test func c1AndBidiControlsAreEscapedAndRoundTrip() throws {
        let text = "a\u{9B}31m\u{202E}b é 気 ✓ \u{1F388} \u{7F}\u{1B}"
        let line = JSON.string(text).serialized()
        #expect(line == #""a\u009b31m\u202eb é 気 ✓ 🎈 \u007f\u001b""#)
        #expect(try JSON.parse(Array(line.utf8)) == .string(text))
    }
}

// SPDX-License-Identifier: Apache-2.0
import Glibc

/// The terminal a live view (`balloonctl top`) draws on: its width, and
/// single keys read from standard input without echo or line editing.
package enum Terminal {
    /// The columns of the terminal on `stream`; nil when it is not a terminal.
    package static func width(_ stream: StandardStream) -> Int? {
        var size = winsize()
        let result = withUnsafeMutablePointer(to: &size) { ioctl(stream.rawValue, UInt(TIOCGWINSZ), $0) }
        guard result == 0, size.ws_col > 0 else { return nil }
        return Int(size.ws_col)
    }
}

/// Standard input as keys: non-canonical, no echo, until `restore()`.
package final class KeyReader {
    private let saved: termios

    /// nil when standard input is not a terminal (no keys then).
    package init?() {
        var current = termios()
        guard isatty(StandardStream.input.rawValue) == 1, tcgetattr(StandardStream.input.rawValue, &current) == 0 else { return nil }
        saved = current
        var raw = current
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        guard tcsetattr(StandardStream.input.rawValue, TCSANOW, &raw) == 0 else { return nil }
    }

    /// Puts the terminal back as it was.
    package func restore() {
        var original = saved
        _ = tcsetattr(StandardStream.input.rawValue, TCSANOW, &original)
    }

    /// A key pressed within `timeout`, or nil (also at end of input).
    package func key(within timeout: Duration) throws(SystemError) -> UInt8? {
        guard try HostIO.waitReadable(raw: StandardStream.input.rawValue, timeout: timeout) else { return nil }
        var byte: UInt8 = 0
        let n = try syscall("read", subject: "standard input") { Glibc.read(StandardStream.input.rawValue, &byte, 1) }
        return n == 1 ? byte : nil
    }
}

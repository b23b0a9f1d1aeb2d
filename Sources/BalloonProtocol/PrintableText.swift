// SPDX-License-Identifier: Apache-2.0
/// Text a peer sent, made safe to print: a guest's error message in the
/// host's log or on a terminal must not move the cursor, clear the screen,
/// set a window title, forge a second log line or reorder what follows it.
/// Control characters (C0, DEL, C1) and the Unicode bidirectional controls
/// become `\u{XX}`; everything else is kept as it is.
public enum PrintableText {
    public static func escape(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if needsEscape(scalar) {
                out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16, uppercase: true))}".unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    /// Whether a scalar must not reach a terminal or log as it is.
    public static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x00...0x1F, 0x7F...0x9F: true  // C0, DEL, C1 (ESC, CSI, OSC, newlines)
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true  // bidirectional controls
        default: false
        }
    }
}

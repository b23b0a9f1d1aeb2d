// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonStats

/// What balloon-hostd's QMP socket does with a client's bytes: QEMU's JSON
/// streamer, then the session state machine (negotiation, commands) against
/// a device of its own. Invariants: the streamer never buffers past its bound;
/// every reply is one CRLF-terminated JSON object with `return` or `error`
/// that parses again; a balloon action is whole pages within guest RAM.
public enum QMPFuzz {
    /// Small enough that the fuzzer reaches the oversized-value path within
    /// its 2 KiB inputs (scripts/fuzz.sh).
    static let maxValueBytes = 1024

    /// The first byte picks what the host knows of the guest (connected or
    /// not, RAM known or not, balloon size) and whether polling gets stats.
    public static func run(_ data: UnsafeRawBufferPointer) {
        guard let selector = data.first else { return }
        let ram: UInt64 = selector & 2 == 0 ? 1 << 30 : 0
        let guest = QMPGuestView(connected: selector & 1 == 0, ramSize: ram, balloon: UInt64(selector >> 2) << 22)
        var device = QMPDevice()
        var session = QMPSession()
        var parser = QMPStreamParser(maxValueBytes: maxValueBytes)
        var stats = VirtioStats()
        stats[.availableMemory] = UInt64(selector) << 20

        // A reply's wire form is checked once per input: stray bytes yield
        // the same error reply again and again. The reply value is compared
        // before it is encoded: encoding is a pure function of it, and
        // encoding + hashing every reply was half of this target's CPU
        // (docs/fuzzing.md).
        var checked: [JSON] = []
        for item in parser.feed(UnsafeRawBufferPointer(rebasing: data.dropFirst())) {
            precondition(parser.bufferedBytes <= maxValueBytes + 8, "QMP streamer buffers \(parser.bufferedBytes) bytes")
            let (reply, action) = session.handle(item, device: &device, guest: guest)
            device.observe(stats, wallSeconds: 1_700_000_000)
            if case let .setBalloon(bytes) = action {
                precondition(guest.active && bytes < guest.ramSize && bytes % 4096 == 0, "balloon action \(bytes) out of range")
            }
            guard !checked.contains(reply) else { continue }
            checked.append(reply)
            let wire = QMPWire.encode(reply)
            precondition(wire.suffix(2).elementsEqual([0x0D, 0x0A]), "a QMP reply ends with CRLF")
            let body = wire.dropLast(2)
            precondition(!body.contains(0x0A) && !body.contains(0x0D), "a QMP reply is one line")
            guard let parsed = try? JSON.parse(body) else {
                preconditionFailure("QMP reply is not JSON: \(String(decoding: body, as: UTF8.self))")
            }
            precondition((parsed["return"] == nil) != (parsed["error"] == nil), "a reply has return or error")
            if let error = parsed["error"] {
                precondition(error["class"]?.string != nil && error["desc"]?.string != nil, "an error has class and desc")
            }
        }
    }
}

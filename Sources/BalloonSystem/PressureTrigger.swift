// SPDX-License-Identifier: Apache-2.0
import Glibc
import SystemPackage

/// A PSI trigger: `some|full STALL_US WINDOW_US` written to
/// /proc/pressure/memory opened O_RDWR|O_NONBLOCK; the kernel then reports
/// EPOLLPRI on the descriptor when the stall threshold is crossed within a
/// window (at most once per window).
package final class PressureTrigger {
    package enum Kind: String, Sendable { case some, full }

    package let descriptor: Descriptor
    package let kind: Kind
    package let stall: Duration
    package let window: Duration

    /// Without CAP_SYS_RESOURCE the kernel accepts only windows that are
    /// whole multiples of 2 s (EINVAL otherwise).
    package static let unprivilegedWindowGranularity: Duration = .seconds(2)

    /// The kernel takes whole microseconds; `stall` and `window` are rounded
    /// down to them.
    package init(kind: Kind, stall: Duration, window: Duration,
                path: String = "/proc/pressure/memory") throws(SystemError) {
        let fd = try Descriptor.open(path, flags: O_RDWR | O_NONBLOCK)
        let spec = "\(kind.rawValue) \(stall.inMicroseconds) \(window.inMicroseconds)"
        let bytes = Array(spec.utf8) + [0]
        _ = try syscall("write", subject: "\(path) (trigger \"\(spec)\")") {
            bytes.withUnsafeBytes { Glibc.write(fd.raw, $0.baseAddress, $0.count) }
        }
        self.descriptor = fd
        self.kind = kind
        self.stall = .microseconds(stall.inMicroseconds)
        self.window = .microseconds(window.inMicroseconds)
    }

    package var spec: String { "\(kind.rawValue) \(stall.inMicroseconds) \(window.inMicroseconds)" }
}

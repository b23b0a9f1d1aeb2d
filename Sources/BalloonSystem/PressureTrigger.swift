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
    package let stallMicroseconds: UInt64
    package let windowMicroseconds: UInt64

    /// Without CAP_SYS_RESOURCE the kernel accepts only windows that are
    /// whole multiples of 2 s (EINVAL otherwise).
    package static let unprivilegedWindowGranularity: UInt64 = 2_000_000

    package init(kind: Kind, stallMicroseconds: UInt64, windowMicroseconds: UInt64,
                path: String = "/proc/pressure/memory") throws(SystemError) {
        let fd = try Descriptor.open(path, flags: O_RDWR | O_NONBLOCK)
        let spec = "\(kind.rawValue) \(stallMicroseconds) \(windowMicroseconds)"
        let bytes = Array(spec.utf8) + [0]
        _ = try syscall("write", subject: "\(path) (trigger \"\(spec)\")") {
            bytes.withUnsafeBytes { Glibc.write(fd.raw, $0.baseAddress, $0.count) }
        }
        self.descriptor = fd
        self.kind = kind
        self.stallMicroseconds = stallMicroseconds
        self.windowMicroseconds = windowMicroseconds
    }

    package var spec: String { "\(kind.rawValue) \(stallMicroseconds) \(windowMicroseconds)" }
}

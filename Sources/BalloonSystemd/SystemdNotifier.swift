// SPDX-License-Identifier: Apache-2.0
import BalloonDaemon
import BalloonSystem
import CSystemd
import Glibc
import Logging

/// `ServiceNotifier` over systemd's `sd_notify(3)`: `READY=1`, `RELOADING=1`,
/// `STOPPING=1`, `STATUS=` and `WATCHDOG=1` for a `Type=notify` unit with
/// `WatchdogSec=`. Outside systemd (`NOTIFY_SOCKET` unset) every call is a
/// no-op and no watchdog is armed.
///
/// A failing `sd_notify` is reported through the logger, not ignored: the first
/// failure of each kind is logged as an error, repeats are counted and the
/// recovery is logged, so a broken notify socket cannot flood the journal from
/// the watchdog timer.
public final class SystemdNotifier: ServiceNotifier {
    private var logger: Logger
    /// `WATCHDOG_USEC` (for this process), nil when no watchdog.
    public let watchdogInterval: Duration?
    /// Whether `NOTIFY_SOCKET` was set when this notifier was made.
    public let supervised: Bool
    /// State → failures since the last success (for rate-limited reports).
    private var failing: [String: Int] = [:]

    public init(logger: Logger) {
        self.logger = logger
        supervised = ProcessControl.environment("NOTIFY_SOCKET") != nil
        var usec: UInt64 = 0
        // > 0: enabled for this process (WATCHDOG_PID, if set, is ours).
        let r = sd_watchdog_enabled(0, &usec)
        if r > 0, usec > 0 {
            watchdogInterval = .microseconds(Int64(clamping: usec))
        } else {
            watchdogInterval = nil
            if r < 0 {
                logger.error("sd_watchdog_enabled failed; no watchdog pings will be sent", metadata: [
                    "errno": "\(-r)", "error": "\(Self.errorText(-r))",
                ])
            }
        }
    }

    public func ready() { notify("READY=1") }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (required by systemd ≥ 253 for
    /// `Type=notify-reload`, harmless before); `ready()` ends the reload.
    public func reloading() {
        let usec = SystemClock.monotonic().inMicroseconds
        notify("RELOADING=1\nMONOTONIC_USEC=\(usec)", kind: "RELOADING=1")
    }

    public func stopping() { notify("STOPPING=1") }

    public func status(_ text: String) {
        // One line: a newline would start a new assignment.
        let line = String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
        notify("STATUS=\(line)", kind: "STATUS=")
    }

    public func watchdog() { notify("WATCHDOG=1") }

    /// Sends `state`; `kind` names it in reports (defaults to the state).
    private func notify(_ state: String, kind: String? = nil) {
        guard supervised else { return }
        let kind = kind ?? state
        let r = sd_notify(0, state)
        if r > 0 {
            if let count = failing.removeValue(forKey: kind) {
                logger.notice("sd_notify(\(kind)) works again after \(count) failure(s)")
            }
            return
        }
        // 0: NOTIFY_SOCKET vanished from the environment; < 0: -errno.
        let count = (failing[kind] ?? 0) + 1
        failing[kind] = count
        guard count == 1 else { return }
        if r == 0 {
            logger.error("sd_notify(\(kind)) sent nothing: NOTIFY_SOCKET is no longer set")
        } else {
            logger.error("sd_notify(\(kind)) failed: \(Self.errorText(-r)); systemd may consider balloond hung", metadata: [
                "errno": "\(-r)", "notify-socket": "\(ProcessControl.environment("NOTIFY_SOCKET") ?? "")",
            ])
        }
    }

    static func errorText(_ errno: Int32) -> String {
        String(cString: strerror(errno))
    }

    /// Failures since the last success, by kind (for tests).
    public var failureCounts: [String: Int] { failing }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import Glibc
import Logging

/// `ServiceNotifier` over systemd's notification protocol (`sd_notify(3)`,
/// spoken by `SupervisorSocket` without libsystemd, so the static
/// balloon-hostd uses this too): `READY=1`, `RELOADING=1`, `STOPPING=1`,
/// `STATUS=` and `WATCHDOG=1` for a `Type=notify` unit with `WatchdogSec=`.
/// Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op and no
/// watchdog is armed.
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
        supervised = SupervisorSocket.address != nil
        // WATCHDOG_USEC, if WATCHDOG_PID (when set) is ours.
        watchdogInterval = SupervisorSocket.watchdogInterval()
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
        // nil: NOTIFY_SOCKET vanished from the environment.
        var failure: SystemError?
        if let address = SupervisorSocket.address {
            do {
                try SupervisorSocket.send(state, to: address)
                if let count = failing.removeValue(forKey: kind) {
                    logger.notice("sd_notify(\(kind)) works again after \(count) failure(s)")
                }
                return
            } catch { failure = error }
        }
        let count = (failing[kind] ?? 0) + 1
        failing[kind] = count
        guard count == 1 else { return }
        guard let failure else {
            logger.error("sd_notify(\(kind)) sent nothing: NOTIFY_SOCKET is no longer set")
            return
        }
        let code = failure.errno?.rawValue ?? 0
        logger.error("sd_notify(\(kind)) failed: \(Self.errorText(code)); systemd may consider the service hung", metadata: [
            "errno": "\(code)", "notify-socket": "\(SupervisorSocket.address ?? "")",
        ])
    }

    static func errorText(_ errno: Int32) -> String {
        String(cString: strerror(errno))
    }

    /// Failures since the last success, by kind (for tests).
    public var failureCounts: [String: Int] { failing }
}

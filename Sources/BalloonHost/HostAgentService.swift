// SPDX-License-Identifier: Apache-2.0
import BalloonSystem

// balloon-hostd under systemd (Type=notify, WatchdogSec=): READY=1 when it
// runs, RELOADING=1 … READY=1 around SIGHUP (HostAgentReload.swift),
// STOPPING=1 (ServeLoop.shutdown), STATUS= and WATCHDOG=1 from the loop
// itself, so a stuck loop (not just a live process) is what the watchdog sees.

extension HostAgent {
    /// Pings every half of `WATCHDOG_USEC`; nothing when no watchdog is armed.
    func armWatchdog() {
        guard let interval = notifier.watchdogInterval, interval > .zero else { return }
        do { try watchdogTimer.arm(after: max(.milliseconds(1), interval / 2), repeating: true) } catch {
            log("cannot arm the watchdog timer: \(error); systemd will stop the agent")
        }
    }

    func watchdogTick() {
        watchdogTimer.acknowledge()
        notifier.watchdog()
    }

    /// `STATUS=` for `systemctl status`: sent only when it changes (from the
    /// housekeeping tick, so within 250 ms of a guest coming or going).
    func updateStatus() {
        let connected = loop.peers.values.reduce(0) { $0 + ($1.link?.synced == true ? 1 : 0) }
        let text = "\(loop.peers.count) guests, \(connected) connected, policy \(policy.mode.rawValue)"
        guard text != lastStatus else { return }
        lastStatus = text
        notifier.status(text)
    }
}

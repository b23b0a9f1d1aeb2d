// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonProtocol
import BalloonService

/// `STATUS=` for `systemctl status`, sent only when it changes.
struct ServiceStatus {
    /// What the text is made of: compared every loop turn (several a second
    /// in the free-memory mode), where formatting the text each time was a
    /// measurable part of an idle daemon's CPU on a slow vCPU.
    private struct Inputs: Equatable {
        var target: UInt64, actual: UInt64
        var state: String, host: String, reason: String?, backoff: Bool
    }

    let notifier: ServiceNotifier
    private var last: Inputs?

    init(notifier: ServiceNotifier) { self.notifier = notifier }

    mutating func update(_ controller: BalloonController, host: String) {
        let inputs = Inputs(
            target: controller.target, actual: controller.actual, state: controller.state.rawValue, host: host,
            reason: controller.reason?.code.rawValue, backoff: controller.inPressureBackoff)
        guard inputs != last else { return }
        last = inputs
        var text = "target \(HumanBytes.format(inputs.target)), actual \(HumanBytes.format(inputs.actual)), \(inputs.state), host \(inputs.host)"
        if let reason = inputs.reason { text += " (\(reason))" }
        text += inputs.backoff ? ", pressure backoff" : ", no pressure"
        notifier.status(text)
    }
}

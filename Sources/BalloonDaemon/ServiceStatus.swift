// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonProtocol
import BalloonService

/// `STATUS=` for `systemctl status`, sent only when it changes.
struct ServiceStatus {
    let notifier: ServiceNotifier
    private var last = ""

    init(notifier: ServiceNotifier) { self.notifier = notifier }

    mutating func update(_ controller: BalloonController, host: String) {
        var text = "target \(HumanBytes.format(controller.target)), actual \(HumanBytes.format(controller.actual)), \(controller.state.rawValue), host \(host)"
        if let reason = controller.reason { text += " (\(reason.code.rawValue))" }
        text += controller.inPressureBackoff ? ", pressure backoff" : ", no pressure"
        guard text != last else { return }
        last = text
        notifier.status(text)
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonProtocol

/// How the daemon tells its supervisor what it is doing: systemd's sd_notify
/// in production (Type=notify, watchdog), nothing when run by hand.
public protocol ServiceNotifier: AnyObject {
    /// The channel is open and the first stats were read.
    func ready()
    /// A SIGHUP reload starts; `ready()` follows when it is done.
    func reloading()
    func stopping()
    /// One line for `systemctl status`: target, actual, pressure, host.
    func status(_ text: String)
    /// How often the loop must call `watchdog()`, nil when none is armed.
    var watchdogInterval: Duration? { get }
    func watchdog()
}

/// For a daemon run without a supervisor.
public final class NoServiceNotifier: ServiceNotifier {
    public init() {}
    public func ready() {}
    public func reloading() {}
    public func stopping() {}
    public func status(_ text: String) {}
    public var watchdogInterval: Duration? { nil }
    public func watchdog() {}
}

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

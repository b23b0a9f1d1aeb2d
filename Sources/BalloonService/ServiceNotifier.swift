// SPDX-License-Identifier: Apache-2.0

/// How a daemon tells its supervisor what it is doing: systemd's sd_notify
/// in production (Type=notify, watchdog), nothing when run by hand. balloond
/// and balloon-hostd both speak it (SystemdNotifier).
public protocol ServiceNotifier: AnyObject {
    /// Started: balloond's channel is open and the first stats were read;
    /// balloon-hostd's control socket listens and its guests are loaded.
    func ready()
    /// A SIGHUP reload starts; `ready()` follows when it is done.
    func reloading()
    func stopping()
    /// One line for `systemctl status`.
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

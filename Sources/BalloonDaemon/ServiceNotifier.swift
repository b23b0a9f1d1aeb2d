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
    /// How often the loop must call `watchdog()` (ms), nil when none is armed.
    var watchdogIntervalMilliseconds: UInt64? { get }
    func watchdog()
}

/// For a daemon run without a supervisor.
public final class NoServiceNotifier: ServiceNotifier {
    public init() {}
    public func ready() {}
    public func reloading() {}
    public func stopping() {}
    public func status(_ text: String) {}
    public var watchdogIntervalMilliseconds: UInt64? { nil }
    public func watchdog() {}
}

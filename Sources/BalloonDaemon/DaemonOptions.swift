// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonController
import BalloonProtocol
import BalloonSystem

public let balloondVersion = BalloondVersion.current

public struct DaemonOptions: Sendable {
    public var configPath: String
    /// True when given with --config: a missing file is then an error.
    public var configRequired: Bool
    /// --channel overrides Listen= (also across reloads).
    public var channelOverride: ChannelSpec?
    /// Test-only fault switches (BALLOOND_TEST_FAULTS=1): SIGUSR2 stalls the
    /// loop forever, so tests can see the watchdog restart the daemon.
    public var testFaults: Bool
    /// How long memory a host may still be freeing stays locked at most
    /// (docs/protocol.md, "Frame reporting"); shorter only in tests.
    public var frameReleaseGrace: Duration

    public init(
        configPath: String, configRequired: Bool, channelOverride: ChannelSpec?, testFaults: Bool = false,
        frameReleaseGrace: Duration = FrameReporter.defaultGrace
    ) {
        self.configPath = configPath
        self.configRequired = configRequired
        self.channelOverride = channelOverride
        self.testFaults = testFaults
        self.frameReleaseGrace = frameReleaseGrace
    }
}

/// Why the daemon could not start or had to stop.
public enum DaemonError: Error, CustomStringConvertible {
    /// A descriptor the loop needs could not be made.
    case setup(String, SystemError)
    /// /proc/meminfo has no MemTotal (or could not be read: the cause).
    case noMemoryTotal(SystemError?)
    case channel(ChannelError)
    /// epoll_wait failed: the loop cannot go on.
    case loop(SystemError)

    public var description: String {
        switch self {
        case let .setup(what, error): "cannot set up \(what): \(error)"
        case let .noMemoryTotal(error): "cannot read MemTotal from /proc/meminfo" + (error.map { ": \($0)" } ?? "")
        case let .channel(error): "\(error)"
        case let .loop(error): "the event loop failed: \(error)"
        }
    }

    /// The system error underneath, if any.
    public var cause: SystemError? {
        switch self {
        case let .setup(_, e), let .loop(e): e
        case let .noMemoryTotal(e): e
        case let .channel(e): e.cause
        }
    }
}

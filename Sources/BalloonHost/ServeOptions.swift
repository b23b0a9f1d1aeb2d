// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

/// What `serve` needs to run; balloon-hostd gives each of its guests one
/// too (the control path and client limits are then the agent's).
public struct ServeOptions {
    /// The guest channel.
    public var guest: GuestAddress
    /// The control socket to listen on (created mode 0600).
    public var controlPath: String
    /// The target to keep applying after every (re)connect; later `set-target`
    /// calls on the control socket replace it.
    public var desiredTarget: UInt64?
    /// How long the guest may take to answer `sync` and each request before
    /// the connection is considered dead and re-made.
    public var guestTimeout: Duration = .seconds(10)
    /// The longest a connect (hybrid vsock handshake) may block the loop.
    public var connectTimeout: Duration = .seconds(2)
    /// Ask the guest for STATS events this often after every sync (balloon-hostd:
    /// `[Policy] StatsInterval=`); nil: serve leaves the guest's setting alone.
    public var statsInterval: Duration?
    /// Reconnect backoff: first delay, doubled after each failure up to the max.
    public var backoffInitial: Duration = .milliseconds(200)
    public var backoffMax: Duration = .seconds(5)
    /// A control client whose unsent output exceeds this is dropped.
    public var clientOutboxLimit = 1 << 20
    public var maxClients = 64
    /// Also serve QEMU's QMP balloon dialect on this unix socket (docs/qmp.md).
    public var qmpPath: String?
    /// Switch the guest's free-memory mode on in every session (needs a memory backend).
    public var freeMemoryReporting = false
    /// Allocate the backend again for frames the guest takes back, ahead of
    /// its touching them (PopulateQueue.swift; `--no-populate-on-deflate`). On by
    /// default: bench-free's W3 meets its goal only with it; the price is that
    /// the cushion the guest keeps free stays backed (free-memory.md).
    public var populateOnDeflate = true
    /// With `populateOnDeflate`, allocate only frames the guest takes back on
    /// its own, below the desired target (balloon-hostd's
    /// `PopulateOnDeflate=below-target`), not what a lower target releases.
    public var populateBelowTargetOnly = false
    /// With `populateOnDeflate`, also map what was allocated into the page
    /// tables of the process that maps the RAM file (QEMU), so the guest's
    /// touch takes no fault there either (Prefaulter.swift; `--no-prefault`).
    public var prefault = true
    /// Stop on SIGINT/SIGTERM (blocks them in the calling thread).
    public var handleSignals = false
    /// Where log lines go (one line each, no newline).
    public var log: (String) -> Void = { _ in }

    public init(guest: GuestAddress, controlPath: String) {
        self.guest = guest
        self.controlPath = controlPath
    }
}

/// What `serve` tells control clients while it has no guest session.
public enum ServeCommand {
    public static let notConnected = "guest not connected (reconnecting)"
}

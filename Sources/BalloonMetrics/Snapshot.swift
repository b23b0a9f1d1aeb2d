// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonStats

/// Everything one scrape shows, as plain values (BalloonHost fills it from
/// the agent; tests build it by hand). nil: unknown, and its series absent.
public struct MetricsSnapshot: Sendable {
    public var agent: AgentMetrics
    public var guests: [GuestMetrics]
    public init(agent: AgentMetrics, guests: [GuestMetrics]) {
        self.agent = agent
        self.guests = guests
    }
}

public struct AgentMetrics: Sendable {
    public var version: String
    public var policyMode: String
    /// The host (or the `HostMemory=` budget) as the policy sees it.
    public var hostTotal: UInt64?
    public var hostAvailable: UInt64?
    public var hostReserve: UInt64?
    public var hostBudget = false
    /// Host PSI memory avg10, percent as /proc/pressure has it.
    public var hostSomeAvg10: Double?
    public var hostFullAvg10: Double?
    public var policyRounds: UInt64 = 0
    public var targetsSet: UInt64 = 0
    /// Over every guest since the start, kept across guests' removal.
    public var punches: UInt64 = 0
    public var punchFailures: UInt64 = 0
    public var punchedBytes: UInt64 = 0
    /// Clients refused at connect for a socket's client limit, by socket
    /// (`control`, `qmp` over every guest, `metrics`); control clients
    /// dropped (not reading their answers, or holding a slot unused).
    public var clientsRefused: [(socket: String, count: UInt64)] = []
    public var controlClientsDropped: UInt64 = 0

    public init(version: String, policyMode: String) {
        self.version = version
        self.policyMode = policyMode
    }
}

public struct GuestMetrics: Sendable {
    public var name: String
    public var source: String
    public var policy: String
    /// Synced with its balloond now.
    public var up: Bool
    /// `RamSize=`, the backend file's size, or the guest's MemTotal.
    public var ramSize: UInt64?
    /// The balloon the agent keeps applied.
    public var target: UInt64?
    /// The balloon's size now.
    public var balloon: UInt64?
    /// The newest STATS event's data.
    public var stats: VirtioStats?
    public var pressure: Pressure?
    public var freeMemoryHeld: UInt64?
    /// The newest STATS sample's wall-clock time, seconds since the epoch.
    public var statsTimestamp: Double?
    public var reconnects: UInt64 = 0
    public var malformedLines: UInt64 = 0
    /// With a `MemoryBackend=`: what the frame ledger and puncher did.
    public var backend: BackendMetrics?

    public init(name: String, source: String, policy: String, up: Bool) {
        self.name = name
        self.source = source
        self.policy = policy
        self.up = up
    }
}

public struct BackendMetrics: Sendable {
    /// Host memory freed behind the guest now (punched and still held).
    public var heldBytes: UInt64
    public var punchedBytes: UInt64
    public var punches: UInt64
    public var punchFailures: UInt64
    public var refused: RefusalCounters
    /// Bytes allocated again for frames the guest took back.
    public var populatedBytes: UInt64
    /// The part of those mapped into QEMU ahead of the guest (Prefaulter).
    public var prefaultedBytes: UInt64

    public init(heldBytes: UInt64, punchedBytes: UInt64, punches: UInt64, punchFailures: UInt64, refused: RefusalCounters,
                populatedBytes: UInt64 = 0, prefaultedBytes: UInt64 = 0) {
        self.populatedBytes = populatedBytes
        self.prefaultedBytes = prefaultedBytes
        self.heldBytes = heldBytes
        self.punchedBytes = punchedBytes
        self.punches = punches
        self.punchFailures = punchFailures
        self.refused = refused
    }
}

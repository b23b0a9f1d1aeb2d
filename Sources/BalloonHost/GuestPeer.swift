// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonProtocol
import BalloonSystem

/// One guest of the shared loop (`ServeLoop`): what `balloonctl serve` does
/// for its guest and balloon-hostd for each of its guests. Reconnect with
/// backoff, sync, re-apply the desired target, the stats subscription, and
/// frames → punch → ack (ServeGuestLink.swift, ServeFrames.swift). The loop
/// owns the descriptors' epoll, the control clients and the clock.
final class GuestPeer {
    /// Unique in the loop; part of this peer's epoll tokens.
    let id: UInt64
    let name: String
    /// This guest's settings (the control path and client limits are the loop's).
    let options: ServeOptions
    unowned let loop: ServeLoop
    var ledger: FrameLedger?
    let puncher: BackendPuncher?
    let reconnectTimer: TimerDescriptor
    var clock: () -> Duration { loop.clock }

    var link: GuestLink?
    var generation: UInt64 = 0
    var backoff: Duration
    var hadSession = false
    var lastConnectError: String?
    var lastRefusalLog: Duration?
    var guestMalformed: UInt64 = 0
    var status = ServeStatus()
    /// The frames held above the desired target at the last report (ServeFreeMemory.swift).
    var freeMemoryShare: UInt64 = 0
    /// Whether the daemon that reports frames is known alive (ServeFrames.swift).
    var liveness = LivenessProof()
    /// Frame events waiting, in order, for a sign of life of their daemon,
    /// with their decoded form (nil: malformed, refused when acted on).
    var heldFrameEvents: [(event: Event, typed: GuestEvent?)] = []
    var probeOutstanding = false
    /// The newest `seq` acknowledged in this daemon lifetime (a probe repeats it).
    var lastAckedSeq: UInt64 = 0
    /// Backend ranges the guest took back, to allocate again (ServeFrames.swift).
    var populateQueue = PopulateQueue()
    var lastPopulateLog: Duration?
    /// Maps what was allocated again into QEMU's page tables (Prefaulter.swift).
    let prefaulter: Prefaulter?
    var lastPrefaultLog: Duration?
    var reportedNoMapping = false

    /// What the policy and `balloonctl list` see (HostAgent fills `limits`,
    /// `source` and `ramSize`; the session fills the rest).
    var agent = AgentView() {
        didSet { qmp?.guestChanged() }
    }
    /// `[Guest] QMP=`: the guest's QMP socket (QMPServer.swift).
    var qmp: QMPServer?
    struct AgentView {
        var source = "serve"
        var limits = GuestLimits(min: 0, max: 0)
        /// `RamSize=`, else the backend file's size; nil: the guest's MemTotal.
        var ramSize: UInt64?
        var actual: UInt64?
        /// The guest's MemAvailable floor, from its `query` reply at each sync.
        var availableFloor: UInt64?
        var sample: GuestSample?
        /// The newest STATS event whole, for /metrics.
        var stats: StatsReply?
        var reason: String?
        /// Why the balloon stops short of the target, as the guest last said.
        var held: StopReason?
    }

    /// What a reply from the guest is for.
    enum Pending {
        case forward(client: UInt64, id: JSON?, target: UInt64?, previousDesired: UInt64?)
        case frameReporting
        case freeMemoryReporting
        case statsInterval
        case query
        case setTarget(UInt64)
        case ack(UInt64, instance: String?)
        /// A no-op `frames-ack` asking the reporting daemon for a sign of life.
        case probe(instance: String)
    }

    init(id: UInt64, name: String, options: ServeOptions, frames: (ledger: FrameLedger, puncher: BackendPuncher)?, loop: ServeLoop) throws(HostError) {
        self.id = id
        self.name = name
        self.options = options
        self.loop = loop
        ledger = frames?.ledger
        puncher = frames?.puncher
        prefaulter = options.populateOnDeflate && options.prefault
            ? (try? frames?.puncher.file.status()).map { Prefaulter(file: $0) } : nil
        backoff = options.backoffInitial
        status.desiredTarget = options.desiredTarget
        status.guest = options.guest.description
        status.memoryBackend = frames?.puncher.file.path
        do {
            reconnectTimer = try TimerDescriptor()
            try loop.epoll.add(reconnectTimer.descriptor, events: .readable, token: ServeLoop.token(.reconnect, id))
        } catch { throw .io(error) }
    }

    func log(_ line: String) { options.log(line) }

    /// Ends the session and releases the descriptors (the peer is being removed).
    func close(reason: String) {
        if link != nil { disconnect(reason, reconnect: false) }
        qmp?.close()
        qmp = nil
        loop.epoll.remove(reconnectTimer.descriptor)
        reconnectTimer.descriptor.close()
    }

    /// The counters `serve-status` and `guest-status` report.
    var currentStatus: ServeStatus {
        var s = status
        s.guestConnected = link?.synced ?? false
        s.controlClients = loop.clients.values.filter { $0.selected == id }.count
        s.clientsDropped = loop.clientsDropped
        s.clientsRefused = loop.clientsRefused
        s.qmpClientsRefused = qmp?.refused ?? 0
        if let ledger {
            s.framesHeld = ledger.heldFrames
            s.bytesHeld = ledger.heldBytes
            s.refused = ledger.refused
        }
        s.malformedLines = guestMalformed
        if let puncher {
            s.bytesFreed = puncher.bytesFreed
            s.punches = puncher.punches
            s.punchFailures = puncher.failures
            s.bytesPopulated = puncher.bytesPopulated
            s.populateFailures = puncher.populateFailures
            s.bytesPrefaulted = prefaulter?.bytesPrefaulted ?? 0
            s.prefaultFailures = prefaulter?.failures ?? 0
            s.memoryBackendState = puncher.state
        }
        return s
    }

    /// The guest's RAM as the policy should count it.
    var ramSize: UInt64 {
        agent.ramSize ?? agent.sample?.memTotal ?? 0
    }

    /// A `list-guests` row.
    var summary: GuestSummary {
        var g = GuestSummary(
            name: name, channel: options.guest.channelDescription, source: agent.source, connected: link?.synced ?? false,
            policy: AgentCommand.GuestPolicyName(rawValue: agent.limits.policy.rawValue) ?? .manual)
        g.ramSize = ramSize == 0 ? nil : ramSize
        g.target = status.desiredTarget
        g.actual = agent.actual
        g.available = agent.sample?.memAvailable
        g.availableFloor = agent.availableFloor
        g.psiSomeAvg10 = agent.sample?.psiSomeAvg10
        g.psiFullAvg10 = agent.sample?.psiFullAvg10
        g.bytesFreed = puncher?.bytesFreed ?? 0
        g.reason = agent.reason
        g.held = link?.synced == true ? agent.held : nil
        return g
    }

    /// What the policy sees of this guest.
    var policyState: GuestState {
        GuestState(
            name: name, ramSize: ramSize, limits: agent.limits, connected: link?.synced ?? false,
            target: status.desiredTarget ?? 0, actual: agent.actual ?? 0, sample: agent.sample,
            availableFloor: agent.availableFloor, heldByGuest: agent.held != nil)
    }

    /// Keeps `target` applied from now on (and after every reconnect).
    func apply(target: UInt64, reason: String) {
        status.desiredTarget = target
        agent.reason = reason
        guestRequest(.setTarget(target), for: .setTarget(target))
    }
}

extension GuestAddress {
    /// The address as `[Guest] Channel=` spells it.
    var channelDescription: String {
        switch self {
        case let .unix(path): "unix:\(path)"
        case let .vsock(cid, port): "vsock:\(cid):\(port)"
        case let .hybridVsock(path, port): "hybrid-vsock:\(path):\(port)"
        }
    }
}

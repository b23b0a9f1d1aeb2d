// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonMetrics
import BalloonProtocol

// What a scrape of balloon-hostd's /metrics shows: the agent's state as a
// `MetricsSnapshot` (BalloonMetrics renders it), and starting the server.

/// The agent's punch counters summed over every guest it has had. A guest's
/// own counters go when it is removed (reload, a discovered socket gone), so
/// each scrape adds what every guest did since the previous one.
struct MetricsTotals {
    struct Counts: Equatable { var punches: UInt64 = 0, failures: UInt64 = 0, bytes: UInt64 = 0 }
    var total = Counts()
    /// Each backend's counters at the previous scrape, by puncher.
    var seen: [ObjectIdentifier: Counts] = [:]

    mutating func update(_ current: [ObjectIdentifier: Counts]) {
        for (key, now) in current {
            // The counters of one puncher only grow; smaller ones are a new
            // puncher at a reused address.
            let before = seen[key].flatMap {
                $0.punches <= now.punches && $0.failures <= now.failures && $0.bytes <= now.bytes ? $0 : nil
            } ?? Counts()
            total.punches &+= now.punches &- before.punches
            total.failures &+= now.failures &- before.failures
            total.bytes &+= now.bytes &- before.bytes
        }
        seen = current
    }
}

extension HostAgent {
    /// Listens as `[Metrics] Listen=` says. A failure is logged and the agent
    /// runs without metrics: the guests matter more than their graphs.
    func startMetrics() {
        let listen = setup.config.metricsListen
        guard listen != .off else { return }
        do {
            metrics = try MetricsServer(listen: listen, loop: loop) { [unowned self] in
                TextFormat.render(MetricsCatalog.families(metricsSnapshot()))
            }
            log("metrics: serving /metrics on \(metrics!.address)")
        } catch {
            log("metrics: \(error); running without metrics")
        }
    }

    /// The agent and every guest now.
    func metricsSnapshot() -> MetricsSnapshot {
        let peers = loop.peers.values.sorted { $0.name < $1.name }
        var counts: [ObjectIdentifier: MetricsTotals.Counts] = [:]
        for peer in peers {
            guard let p = peer.puncher else { continue }
            counts[ObjectIdentifier(p)] = .init(punches: p.punches, failures: p.failures, bytes: p.bytesFreed)
        }
        metricsTotals.update(counts)

        let now = sampleHost()
        var a = AgentMetrics(version: BalloondVersion.current, policyMode: policy.mode.rawValue)
        a.hostTotal = now.total
        a.hostAvailable = now.available
        a.hostReserve = policySettings.hostReserve
        a.hostBudget = setup.config.hostMemory != nil
        a.hostSomeAvg10 = now.psiSomeAvg10
        a.hostFullAvg10 = now.psiFullAvg10
        a.policyRounds = rounds
        a.targetsSet = targetsSet
        a.punches = metricsTotals.total.punches
        a.punchFailures = metricsTotals.total.failures
        a.punchedBytes = metricsTotals.total.bytes
        a.clientsRefused = [
            ("control", loop.clientsRefused), ("metrics", metrics?.refused ?? 0),
            ("qmp", peers.reduce(0) { $0 + ($1.qmp?.refused ?? 0) }),
        ]
        a.controlClientsDropped = loop.clientsDropped
        return MetricsSnapshot(agent: a, guests: peers.map(\.metrics))
    }
}

extension GuestPeer {
    /// This guest's series.
    var metrics: GuestMetrics {
        var g = GuestMetrics(name: name, source: agent.source, policy: agent.limits.policy.rawValue, up: link?.synced ?? false)
        g.ramSize = ramSize == 0 ? nil : ramSize
        g.target = status.desiredTarget
        g.balloon = agent.actual
        if let s = agent.stats {
            g.stats = s.stats
            g.pressure = s.pressure
            g.freeMemoryHeld = s.freeMemoryHeld
            g.statsTimestamp = Double(s.timestamp.seconds) + Double(s.timestamp.microseconds) / 1e6
        }
        g.reconnects = status.reconnects
        g.malformedLines = guestMalformed
        if let ledger, let puncher {
            g.backend = BackendMetrics(
                heldBytes: ledger.heldBytes, punchedBytes: puncher.bytesFreed, punches: puncher.punches,
                punchFailures: puncher.failures, refused: ledger.refused, populatedBytes: puncher.bytesPopulated,
                prefaultedBytes: prefaulter?.bytesPrefaulted ?? 0)
        }
        return g
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonStats

// Every series balloon-hostd publishes (docs/metrics.md lists them, with the
// libvirt exporters' names they stand for). Guest series: `balloond_`, label
// `guest`; the agent's: `balloon_hostd_`. Units are in the names.

public enum MetricsCatalog {
    public static func families(_ s: MetricsSnapshot) -> [MetricFamily] {
        agentFamilies(s.agent, guests: s.guests) + guestFamilies(s.guests)
    }

    typealias F = MetricFamily
    typealias L = MetricFamily.Label

    static func one(_ name: String, _ kind: F.Kind, _ help: String, _ value: UInt64?, _ labels: [L] = []) -> F {
        F(name, kind, help, value.map { [F.Sample(labels, .int($0))] } ?? [])
    }

    static func one(_ name: String, _ kind: F.Kind, _ help: String, double value: Double?, _ labels: [L] = []) -> F {
        F(name, kind, help, value.map { [F.Sample(labels, .double($0))] } ?? [])
    }

    static func agentFamilies(_ a: AgentMetrics, guests: [GuestMetrics]) -> [F] {
        let p = "balloon_hostd_"
        let up = UInt64(guests.filter(\.up).count)
        return [
            one(p + "build_info", .gauge, "balloon-hostd's version (always 1)", 1, [L("version", a.version)]),
            one(p + "policy_info", .gauge, "the policy mode in effect (always 1)", 1, [L("mode", a.policyMode)]),
            one(p + "host_memory_total_bytes", .gauge, "host memory the policy counts: MemTotal, or the HostMemory= budget", a.hostTotal),
            one(p + "host_memory_available_bytes", .gauge, "host memory available: MemAvailable, or the budget less the memory behind the guests", a.hostAvailable),
            one(p + "host_memory_reserve_bytes", .gauge, "HostReserve= resolved: host memory (or budget) kept available", a.hostReserve),
            one(p + "host_memory_budget", .gauge, "1 if HostMemory= sets a budget, 0 if the host's MemTotal counts", a.hostBudget ? 1 : 0),
            one(p + "host_pressure_memory_some_avg10_ratio", .gauge, "host PSI memory some avg10 (0-1)", double: a.hostSomeAvg10.map { $0 / 100 }),
            one(p + "host_pressure_memory_full_avg10_ratio", .gauge, "host PSI memory full avg10 (0-1)", double: a.hostFullAvg10.map { $0 / 100 }),
            one(p + "policy_rounds_total", .counter, "policy rounds run", a.policyRounds),
            one(p + "policy_targets_set_total", .counter, "targets the policy set on guests", a.targetsSet),
            one(p + "punches_total", .counter, "holes punched in guests' RAM files (fallocate calls that succeeded)", a.punches),
            one(p + "punch_failures_total", .counter, "punches that failed or were refused as beyond guest RAM", a.punchFailures),
            one(p + "punched_bytes_total", .counter, "bytes punched out of guests' RAM files", a.punchedBytes),
            F(p + "clients_refused_total", .counter, "clients refused at connect: the socket's client limit was reached",
              a.clientsRefused.map { F.Sample([L("socket", $0.socket)], .int($0.count)) }),
            one(p + "control_clients_dropped_total", .counter, "control clients dropped: not reading their answers (1 MiB unsent), no complete request in time, or idle", a.controlClientsDropped),
            F(p + "guests", .gauge, "guests by session state", [
                F.Sample([L("state", "up")], .int(up)), F.Sample([L("state", "down")], .int(UInt64(guests.count) - up)),
            ]),
        ]
    }

    /// The virtio stats by their libvirt-exporter-style names.
    static let virtio: [(VirtioStat, String, F.Kind, String)] = [
        (.totalMemory, "available_bytes", .gauge, "guest memory as the guest sees it (MemTotal; virtio total-memory)"),
        (.availableMemory, "usable_bytes", .gauge, "memory the guest can use without swapping (MemAvailable; virtio available-memory)"),
        (.freeMemory, "unused_bytes", .gauge, "memory the guest leaves unused (MemFree; virtio free-memory)"),
        (.diskCaches, "disk_cache_bytes", .gauge, "the guest's page cache that can be dropped (virtio disk-caches)"),
        (.swapIn, "swap_in_bytes_total", .counter, "bytes the guest swapped in"),
        (.swapOut, "swap_out_bytes_total", .counter, "bytes the guest swapped out"),
        (.majorFaults, "major_fault_total", .counter, "the guest's major page faults"),
        (.minorFaults, "minor_fault_total", .counter, "the guest's minor page faults"),
        (.htlbPgalloc, "hugetlb_pgalloc_total", .counter, "the guest's successful huge page allocations"),
        (.htlbPgfail, "hugetlb_pgfail_total", .counter, "the guest's failed huge page allocations"),
        (.oomKills, "oom_kills_total", .counter, "processes the guest's OOM killer ended"),
        (.allocStalls, "alloc_stalls_total", .counter, "the guest's allocation stalls"),
        (.asyncScans, "async_scan_bytes_total", .counter, "memory the guest's kswapd scanned"),
        (.directScans, "direct_scan_bytes_total", .counter, "memory the guest's direct reclaim scanned"),
        (.asyncReclaims, "async_reclaim_bytes_total", .counter, "memory the guest's kswapd reclaimed"),
        (.directReclaims, "direct_reclaim_bytes_total", .counter, "memory the guest's direct reclaim reclaimed"),
    ]

    static func guestFamilies(_ guests: [GuestMetrics]) -> [F] {
        let p = "balloond_"
        func family(_ name: String, _ kind: F.Kind, _ help: String, _ value: (GuestMetrics) -> F.Value?) -> F {
            F(p + name, kind, help, guests.compactMap { g in value(g).map { F.Sample([L("guest", g.name)], $0) } })
        }
        func int(_ name: String, _ kind: F.Kind, _ help: String, _ value: (GuestMetrics) -> UInt64?) -> F {
            family(name, kind, help) { value($0).map(F.Value.int) }
        }
        var out: [F] = [
            int("up", .gauge, "1 while the agent has a synced session with the guest's balloond") { $0.up ? 1 : 0 },
            F(p + "guest_info", .gauge, "the guest's source (config or discovered) and policy (always 1)", guests.map {
                F.Sample([L("guest", $0.name), L("source", $0.source), L("policy", $0.policy)], .int(1))
            }),
            int("maximum_bytes", .gauge, "the guest's RAM (RamSize=, the RAM file's size, or its MemTotal)") { $0.ramSize },
            int("balloon_target_bytes", .gauge, "the balloon size the agent keeps applied") { $0.target },
            int("balloon_bytes", .gauge, "the balloon's size now (memory the guest has given back)") { $0.balloon },
            int("actual_balloon_bytes", .gauge, "memory the guest has with its balloon: RAM less the balloon (libvirt's actual)") { g in
                guard let ram = g.ramSize, let b = g.balloon else { return nil }
                return ram > b ? ram - b : 0
            },
            int("free_memory_held_bytes", .gauge, "of the balloon, free memory the free-memory mode holds") { $0.freeMemoryHeld },
            family("last_update_timestamp_seconds", .gauge, "wall-clock time of the newest STATS sample") { $0.statsTimestamp.map(F.Value.double) },
        ]
        for (stat, name, kind, help) in virtio {
            out.append(int(name, kind, help) { $0.stats?[stat] })
        }
        out += [
            family("pressure_memory_some_avg10_ratio", .gauge, "guest PSI memory some avg10 (0-1)") { $0.pressure?.some.map { .double($0.avg10 / 100) } },
            family("pressure_memory_full_avg10_ratio", .gauge, "guest PSI memory full avg10 (0-1)") { $0.pressure?.full.map { .double($0.avg10 / 100) } },
            family("pressure_memory_waiting_seconds_total", .counter, "guest PSI memory some total: time some task waited for memory") {
                $0.pressure?.some.map { .double(Double($0.total) / 1e6) }
            },
            family("pressure_memory_stalled_seconds_total", .counter, "guest PSI memory full total: time all tasks stalled on memory") {
                $0.pressure?.full.map { .double(Double($0.total) / 1e6) }
            },
            int("reconnects_total", .counter, "sessions re-established after the first") { $0.reconnects },
            int("malformed_lines_total", .counter, "lines from the guest that were not valid messages") { $0.malformedLines },
            int("host_freed_bytes", .gauge, "host memory freed behind the guest now: punched out of its RAM file and still in the balloon") { $0.backend?.heldBytes },
            int("host_punched_bytes_total", .counter, "bytes punched out of the guest's RAM file") { $0.backend?.punchedBytes },
            int("host_punches_total", .counter, "holes punched in the guest's RAM file") { $0.backend?.punches },
            int("host_punch_failures_total", .counter, "punches in the guest's RAM file that failed") { $0.backend?.punchFailures },
            int("host_populated_bytes_total", .counter, "bytes allocated again in the guest's RAM file for memory the guest took back") {
                $0.backend?.populatedBytes
            },
            int("host_prefaulted_bytes_total", .counter, "of those, bytes mapped into QEMU's page tables ahead of the guest") {
                $0.backend?.prefaultedBytes
            },
            F(p + "refused_ranges_total", .counter, "reported frame ranges refused, by reason", guests.flatMap { g -> [F.Sample] in
                guard let r = g.backend?.refused else { return [] }
                return [("outside-ram", r.outsideRam), ("overlap", r.overlap), ("rate-limit", r.rateLimit), ("malformed", r.malformed)].map {
                    F.Sample([L("guest", g.name), L("reason", $0.0)], .int($0.1))
                }
            }),
        ]
        return out
    }
}

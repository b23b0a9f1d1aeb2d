// SPDX-License-Identifier: Apache-2.0
import BalloonMetrics
import BalloonProtocol
import BalloonStats
import BalloonTestSupport
import Testing

/// The text format: HELP and TYPE per family, label escaping, exact
/// integers, absent values as absent series; the catalog's names.
@Suite struct Renderer {
    func text(_ families: [MetricFamily]) -> String { String(decoding: TextFormat.render(families), as: UTF8.self) }

    @Test func helpTypeAndEscaping() {
        let f = MetricFamily("x_bytes", .gauge, "help with \\ and\nnewline", [
            .init([.init("guest", "a\"b\\c\nd")], .int(UInt64.max)),
            .init([], .double(0.25)),
        ])
        #expect(text([f]) == """
            # HELP x_bytes help with \\\\ and\\nnewline
            # TYPE x_bytes gauge
            x_bytes{guest="a\\"b\\\\c\\nd"} 18446744073709551615
            x_bytes 0.25

            """)
        #expect(TextFormat.format(.double(3)) == "3" && TextFormat.format(.double(.nan)) == "NaN")
        #expect(TextFormat.format(.double(.infinity)) == "+Inf" && TextFormat.format(.double(-.infinity)) == "-Inf")
        // A family with no samples is left out whole.
        #expect(text([MetricFamily("y", .counter, "h")]) == "")
    }

    func snapshot(withStats: Bool) -> MetricsSnapshot {
        var agent = AgentMetrics(version: "1.2.3", policyMode: "auto")
        agent.hostTotal = 8 << 30
        agent.hostAvailable = 4 << 30
        agent.hostSomeAvg10 = 1.5
        var g = GuestMetrics(name: "web\"1", source: "config", policy: "auto", up: true)
        g.ramSize = 1 << 30
        g.balloon = 256 << 20
        g.target = 256 << 20
        if withStats {
            var stats = VirtioStats()
            stats[.totalMemory] = 1000 << 20
            stats[.availableMemory] = 600 << 20
            stats[.majorFaults] = 7
            g.stats = stats
            g.pressure = Pressure(some: PressureLine(avg10: 2.5, avg60: 0, avg300: 0, total: 1_500_000))
            g.backend = BackendMetrics(heldBytes: 1 << 20, punchedBytes: 2 << 20, punches: 3, punchFailures: 0, refused: RefusalCounters(),
                                       populatedBytes: 5 << 20, prefaultedBytes: 4 << 20)
        }
        return MetricsSnapshot(agent: agent, guests: [g, GuestMetrics(name: "down", source: "discovered", policy: "manual", up: false)])
    }

    @Test func catalogSeries() {
        let page = text(MetricsCatalog.families(snapshot(withStats: true)))
        for line in [
            "balloon_hostd_build_info{version=\"1.2.3\"} 1",
            "balloon_hostd_host_memory_total_bytes 8589934592",
            "balloon_hostd_host_pressure_memory_some_avg10_ratio 0.015",
            "balloon_hostd_guests{state=\"up\"} 1", "balloon_hostd_guests{state=\"down\"} 1",
            "balloond_up{guest=\"web\\\"1\"} 1", "balloond_up{guest=\"down\"} 0",
            "balloond_actual_balloon_bytes{guest=\"web\\\"1\"} 805306368",
            "balloond_balloon_bytes{guest=\"web\\\"1\"} 268435456",
            "balloond_available_bytes{guest=\"web\\\"1\"} 1048576000",
            "balloond_usable_bytes{guest=\"web\\\"1\"} 629145600",
            "balloond_major_fault_total{guest=\"web\\\"1\"} 7",
            "balloond_pressure_memory_some_avg10_ratio{guest=\"web\\\"1\"} 0.025",
            "balloond_pressure_memory_waiting_seconds_total{guest=\"web\\\"1\"} 1.5",
            "balloond_host_freed_bytes{guest=\"web\\\"1\"} 1048576",
            "balloond_host_populated_bytes_total{guest=\"web\\\"1\"} 5242880",
            "balloond_host_prefaulted_bytes_total{guest=\"web\\\"1\"} 4194304",
            "balloond_refused_ranges_total{guest=\"web\\\"1\",reason=\"rate-limit\"} 0",
            "# TYPE balloond_major_fault_total counter", "# TYPE balloond_usable_bytes gauge",
        ] {
            #expect(page.contains("\n" + line + "\n"), "\(line)")
        }
        // Stats the guest kernel lacks (or no STATS yet, or no backend): absent, not 0.
        #expect(!page.contains("balloond_unused_bytes") && !page.contains("balloond_swap_in_bytes_total"))
        #expect(!page.contains("balloond_usable_bytes{guest=\"down\"}") && !page.contains("balloond_host_freed_bytes{guest=\"down\"}"))
        #expect(!page.contains("pressure_memory_full") && !page.contains("balloon_hostd_host_memory_reserve_bytes"))
        let bare = text(MetricsCatalog.families(snapshot(withStats: false)))
        #expect(!bare.contains("balloond_usable_bytes") && !bare.contains("balloond_refused_ranges_total"))
        // Every series name ends in a unit or _total, and every family is in docs/metrics.md.
        let docs = (try? RepoFiles.text("docs/metrics.md")) ?? ""
        for family in MetricsCatalog.families(snapshot(withStats: true)) {
            #expect(docs.contains("`\(family.name)`"), "\(family.name) is not in docs/metrics.md")
            if family.kind == .counter { #expect(family.name.hasSuffix("_total"), "\(family.name)") }
        }
    }

    /// The shipped dashboard and alert rules use only series the agent publishes.
    @Test func monitoringFilesNameRealSeries() throws {
        let names = Set(MetricsCatalog.families(snapshot(withStats: true)).map(\.name))
        for file in ["packaging/monitoring/balloon-hostd-dashboard.json", "packaging/monitoring/balloon-hostd-alerts.yml"] {
            let text = try RepoFiles.text(file)
            let used = text.matches(of: try Regex("balloo(nd|n_hostd)_[a-z0-9_]+")).map { String(text[$0.range]) }
            #expect(!used.isEmpty)
            for name in used where !name.hasSuffix("_") {
                #expect(names.contains(name), "\(file): \(name) is not a series balloon-hostd publishes")
            }
        }
    }
}

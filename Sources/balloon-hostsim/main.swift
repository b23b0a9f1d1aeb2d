// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import BalloonPolicy
import BalloonProtocol
import BalloonSystem

/// balloon-hostsim: fake guests for `make bench-host` (bench/host.py).
struct HostSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balloon-hostsim",
        abstract: "Fake guests speaking protocol v1, and the policy round's cost at scale.",
        subcommands: [Serve.self, PolicyRound.self], defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve N fake guests, one unix socket each (DIR/NAME.sock), in one epoll loop.")

    @Option(help: "Number of guests.") var guests = 1000
    @Option(help: "An existing directory for the sockets.") var dir: String
    @Option(help: "Each guest's RAM in MiB.") var ramMib: UInt64 = 1024
    @Option(help: "Seed of the workload schedules.") var seed: UInt64 = 1
    @Option(help: "STATS interval in ms until the host sets one (0: none).") var statsIntervalMs: Int64 = 1000
    @Option(help: "Stop after this many seconds (default: until killed).") var duration: Int64?

    func run() throws {
        let interval: Duration? = statsIntervalMs > 0 ? .milliseconds(statsIntervalMs) : nil
        let models = (0..<guests).map { i in
            FakeGuest(name: "g\(String(i + 10000).dropFirst())", ram: ramMib << 20, seed: seed &* 1_000_003 &+ UInt64(i), statsInterval: interval)
        }
        let loop = try SimLoop(directory: dir, guests: models)
        HostIO.write("ready \(guests) guests in \(dir)\n", to: .output)
        try loop.run(until: duration.map { SystemClock.monotonic() + .seconds($0) })
        HostIO.write("done: \(loop.requests) requests, \(loop.statsSent) STATS events\n", to: .output)
    }
}

struct PolicyRound: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy-round",
        abstract: "Time the pure policies on N simulated guests (sampled every second, a round every interval); JSON out.")

    @Option(help: "Number of guests.") var guests = 1000
    @Option(help: "Simulated seconds.") var seconds = 300
    @Option(help: "Each guest's RAM in MiB.") var ramMib: UInt64 = 1024
    @Option(help: "Seed.") var seed: UInt64 = 1
    @Option(help: "auto, proxmox, mom or all.") var mode = "all"
    @Option(help: "The host's memory as a percentage of all the guests' RAM.") var budgetPercent: UInt64 = 60

    func run() throws {
        let modes: [PolicyMode] = mode == "all" ? [.auto, .proxmox, .mom] : [PolicyMode(rawValue: mode)].compactMap { $0 }
        guard !modes.isEmpty else { throw ValidationError("unknown mode \(mode)") }
        let bench = PolicyRoundBench(guests: guests, seconds: seconds, ram: ramMib << 20, seed: seed, budgetPercent: budgetPercent)
        var rows: [String] = []
        for m in modes {
            let r = bench.run(m)
            func ms(_ x: Double) -> String { String(Int((x * 1000).rounded())) + "e-3" }
            rows.append("""
                {"mode":"\(m.rawValue)","guests":\(guests),"rounds":\(r.rounds.count),\
                "round_ms_p50":\(ms(r.rounds.quantileMilliseconds(0.5))),"round_ms_p99":\(ms(r.rounds.quantileMilliseconds(0.99))),\
                "round_ms_max":\(ms(r.rounds.quantileMilliseconds(1))),\
                "sampled_all_ms_p50":\(ms(r.sampledPerSecond.quantileMilliseconds(0.5))),\
                "sampled_all_ms_p99":\(ms(r.sampledPerSecond.quantileMilliseconds(0.99))),"changes":\(r.changes),\
                "reasons":{\(r.reasons.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ","))}}
                """)
        }
        HostIO.write("[" + rows.joined(separator: ",\n") + "]\n", to: .output)
    }
}

HostSim.main()

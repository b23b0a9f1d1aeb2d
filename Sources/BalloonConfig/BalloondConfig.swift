// SPDX-License-Identifier: Apache-2.0
/// The daemon's configuration: `/etc/balloond.conf` and its drop-ins, parsed.
/// `init()` gives the built-in defaults, which the shipped file documents.
/// Each key's section, name, syntax, rendering and docs line are in one
/// table, `ConfigKey.allCases` (ConfigKeys.swift); its default is the
/// property's initial value here.
package struct BalloondConfig: Sendable, Equatable {
    /// The page size chunk sizes must be a multiple of.
    package static let pageSize: UInt64 = 4096
    /// Smallest and largest `ChunkSize=`.
    package static let chunkSizeRange: ClosedRange<UInt64> = (2 << 20)...(1 << 30)
    /// Smallest non-zero `FrameRescanInterval=`.
    package static let minimumFrameRescanInterval: Duration = .seconds(1)

    // [Channel]
    /// `Listen=`: where the host connects.
    package var listen: ChannelSpec = .virtioSerial("org.balloond.0")
    /// `VsockAllowedCIDs=`: who may connect over vsock.
    package var vsockAllowedCIDs: VsockPeers = .cids([2])

    // [Balloon]
    /// `ChunkSize=`: bytes reserved or released per step, a page multiple in 2M...1G.
    package var chunkSize: UInt64 = 64 << 20
    /// `MaxBalloon=`: the most the balloon may hold.
    package var maxBalloon: SizeSpec = .percent(80)
    /// `MemAvailableFloor=`: MemAvailable is kept above the largest of these.
    package var memAvailableFloor: [SizeSpec] = [.bytes(256 << 20), .percent(3)]
    /// `TransparentHugePages=`: how balloon chunks are advised for THP.
    package var transparentHugePages: HugePageMode = .auto
    /// `InitialTarget=`: the target to move to at start, before any host speaks.
    package var initialTarget: SizeSpec = .bytes(0)
    /// `FrameRescanInterval=`: how often reported frames are re-read while the
    /// host has frame reporting on; zero = only on request.
    package var frameRescanInterval: Duration = .seconds(60)

    // [Stats]
    /// `Interval=`: period of STATS events; zero = off. Bounds: `StatsIntervalLimits`.
    package var statsInterval: Duration = .zero

    // [Pressure]
    /// PSI triggers on /proc/pressure/memory by tier; nil = off.
    package var lightTrigger: PSITriggerSpec? = PSITriggerSpec(kind: .some, stall: .milliseconds(20), window: .milliseconds(500))
    package var heavyTrigger: PSITriggerSpec? = PSITriggerSpec(kind: .full, stall: .milliseconds(100), window: .seconds(1))
    package var severeTrigger: PSITriggerSpec? = PSITriggerSpec(kind: .full, stall: .milliseconds(500), window: .seconds(1))
    /// `LightStep=`: percent of the balloon a light signal gives back (1–100).
    package var lightStepPercent: UInt64 = 10
    /// `FloorMargin=`: below the floor, deflate until MemAvailable is floor + this.
    package var floorMargin: UInt64 = 64 << 20
    /// `ReclaimSignals=`: watch allocstall_*, pgscan_direct and oom_kill.
    package var reclaimSignals: Bool = true
    /// `FirstQuietPeriod=`: the quiet period after pressure that follows a
    /// calm spell; it doubles, up to `QuietPeriod=`, when pressure comes back soon.
    package var firstQuietPeriod: Duration = .seconds(15)
    /// `QuietPeriod=`: the longest quiet period (no re-inflation until this long without pressure).
    package var quietPeriod: Duration = .seconds(30)
    /// `RegrowFreeMemory=`: during the quiet period the balloon may still grow
    /// toward the host's target into memory that stayed free above the
    /// free-memory cushion for `SettleDelay=` (docs/pressure.md).
    package var regrowFreeMemory = true
    /// `RegrowColdCache=`: with `RegrowFreeMemory=`, cold page cache is
    /// reclaimed a step at a time (cgroup v2 `memory.reclaim`, the cold-cache
    /// guard) for that regrowth to take, up to what it may still take.
    package var regrowColdCache = true
    /// `RegrowAgainAfter=`: after a stall undid regrowth, how long the guest
    /// must go without a stall before regrowth tries again in that quiet
    /// period; at least `QuietPeriod=`: not again.
    package var regrowAgainAfter: Duration = .seconds(5)
    /// `HolderProcesses=`: hold chunks in child processes the OOM killer takes first.
    package var holderProcesses: Bool = true
    /// `LockYieldsToHost=`: a `set-target` below what the chunk being locked
    /// would hold ends the lock (holder processes only).
    package var lockYieldsToHost: Bool = true

    // [FreeMemory] (docs/free-memory.md)
    /// `Allow=`: a host may switch the free-memory mode on.
    package var freeMemoryAllow: Bool = true
    /// `Cushion=`: MemFree the mode leaves to the guest; nil = auto (the
    /// kernel's high watermarks plus 64 MiB).
    package var freeMemoryCushion: UInt64? = nil
    /// `SettleDelay=`: how long memory must stay free before the mode takes it.
    package var freeMemorySettleDelay: Duration = .seconds(2)
    /// `ReclaimColdCache=`: also reclaim cold page cache (cgroup v2 memory.reclaim).
    package var reclaimColdCache: Bool = false
    /// `ColdCacheStep=`: bytes reclaimed per step.
    package var coldCacheStep: UInt64 = 32 << 20

    // [Log]
    /// `Level=`.
    package var logLevel: LogLevel = .info

    /// All defaults.
    package init() {}

    /// The defaults `Key=` puts back.
    static let defaults = BalloondConfig()

    /// The MemAvailable floor in bytes: the largest of `memAvailableFloor`
    /// resolved against `memTotal` (0 if the list is empty).
    package func floorBytes(memTotal: UInt64) -> UInt64 {
        memAvailableFloor.map { $0.resolve(memTotal: memTotal) }.max() ?? 0
    }

    /// The effective configuration in the file format, every key present,
    /// re-parseable to an equal value; used by `balloond --dump-config`.
    /// The header comment lists `sources`, the files it came from, in order.
    package func render(sources: [String]) -> String {
        var out = "# balloond: effective configuration (balloond --dump-config)\n"
        if sources.isEmpty {
            out += "# Built-in defaults only: no configuration file was read.\n"
        } else {
            out += "# Built-in defaults, then these files in order:\n"
            for source in sources {
                // Keep a strange file name from ending the comment early.
                let safe = String(source.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
                out += "#   \(safe)\n"
            }
        }
        var section: ConfigSection?
        for key in ConfigKey.allCases {
            if key.section != section {
                section = key.section
                out += "\n[\(key.section.rawValue)]\n"
            }
            out += "\(key.name)=\(key.render(self))\n"
        }
        return out
    }
}

// MARK: - Values of their own type

/// `TransparentHugePages=`: `yes` advises MADV_HUGEPAGE (huge pages even at
/// the cost of compaction), `no` MADV_NOHUGEPAGE, `auto` follows the system:
/// with THP `always` chunks are left to the kernel (huge pages where free, no
/// forced compaction stalls), with `madvise` they are advised, with `never`
/// nothing is done.
package enum HugePageMode: String, Sendable, Equatable {
    case auto, yes, no
}

/// A PSI trigger as the config writes it: `some 50ms 500ms` (kind, stall,
/// window); the kernel takes windows of 500 ms to 10 s.
package struct PSITriggerSpec: Sendable, Equatable, CustomStringConvertible {
    package enum Kind: String, Sendable { case some, full }
    /// The windows the kernel accepts.
    package static let windowRange: ClosedRange<Duration> = .milliseconds(500) ... .seconds(10)

    package var kind: Kind
    package var stall: Duration
    package var window: Duration

    package init(kind: Kind, stall: Duration, window: Duration) {
        self.kind = kind
        self.stall = stall
        self.window = window
    }

    package var description: String {
        "\(kind.rawValue) \(renderDuration(stall)) \(renderDuration(window))"
    }
}

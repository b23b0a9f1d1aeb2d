// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy

/// balloon-hostd's `/etc/balloon-hostd.conf`: `[Host]`, `[Policy]`,
/// `[Discovery]`, `[Metrics]` (docs/hostd.md). Defaults are the properties' initial
/// values; the keys are in `HostdKeys.host` (HostdKeys.swift).
package struct HostdConfig: Sendable, Equatable {
    package static let defaultPath = "/etc/balloon-hostd.conf"
    package static let defaults = HostdConfig()

    // [Host]
    /// `Control=`: the control socket balloonctl talks to.
    package var control = "/run/balloon-hostd/control"
    /// `HostMemory=`: budget this much for the guests instead of all of MemTotal.
    package var hostMemory: UInt64?
    /// `GuestDirectory=`: one `NAME.conf` per guest.
    package var guestDirectory = "/etc/balloon-hostd.d"
    /// `ControlGroup=`: a group (name or number) whose members may use the
    /// control socket too; nil: only root and the agent's user.
    package var controlGroup: String?

    // [Policy]
    package var mode: PolicyMode = .auto
    /// `HostReserve=`: host memory (or budget) kept available; a percentage is of the total.
    package var hostReserve: SizeSpec = .bytes(512 << 20)
    /// `Interval=`: time between policy rounds; nil: the mode's own.
    package var interval: Duration?
    /// `MaxStep=`: the most a target moves per round; nil: the mode's own.
    package var maxStep: UInt64?
    /// `HeadroomBoost=`: `auto`'s boost limit (docs/policy.md); nil: the policy's own (2).
    package var headroomBoost: Double?
    /// `BurstYield=`: `auto` inflates no guest while another takes memory back at once (docs/policy.md);
    /// the policy's own default.
    package var burstYield = AutoTuning().burstYield
    /// `BurstLinger=`: how long `auto` still yields to a burst after the guest's balloon last fell.
    package var burstLinger = AutoTuning().burstLinger
    /// `BurstHoldGrowth=`: `auto` holds a guest the moment its balloon grows during another's burst.
    package var burstHoldGrowth = AutoTuning().burstHoldGrowth
    /// `SpareStalledCache=`: `auto` does not take again the page cache of a guest
    /// that stalled when it was taken, for its hold-off (docs/policy.md).
    package var spareStalledCache = AutoTuning().spareStalledCache
    /// `RefaultRate=`: a guest's page-cache refaults a second that `auto`
    /// counts as pressure; 0: refaults are not a signal.
    package var refaultRate = UInt64(AutoTuning().refaultsPerSecond)
    /// `StatsInterval=`: how often each guest sends STATS.
    package var statsInterval: Duration = .seconds(1)

    // [Discovery]
    /// `Libvirt=`: watch libvirt's channel directory.
    package var libvirt = true
    /// `Directories=`: directories whose sockets are guests (named after the socket).
    package var directories: [String] = []
    /// `LibvirtMemory=`: where libvirt puts its guests' RAM files (the
    /// directory holding `ID-NAME/`), so discovered libvirt guests get their
    /// RAM file as memory backend; nil: no backend for them.
    package var libvirtMemory: LibvirtMemory?
    /// `LibvirtRamMap=`: the RAM map of those files (`auto`, `pc`, `q35`).
    package var libvirtRamMap: LibvirtRamMap = .auto

    // [Metrics]
    /// `Listen=`: where /metrics is served (docs/metrics.md); `.off`: nowhere.
    package var metricsListen = MetricsListen.defaultValue

    package init() {}

    /// The policy's settings with `HostReserve=` resolved against the host total.
    package func policySettings(hostTotal: UInt64) -> PolicySettings {
        var tuning = AutoTuning()
        if let headroomBoost { tuning.boostLimit = headroomBoost }
        tuning.burstYield = burstYield
        tuning.spareStalledCache = spareStalledCache
        tuning.burstLinger = burstLinger
        tuning.burstHoldGrowth = burstHoldGrowth
        tuning.refaultsPerSecond = Double(refaultRate)
        return PolicySettings(
            mode: mode, hostReserve: hostReserve.resolve(memTotal: hostTotal), interval: interval, maxStep: maxStep, tuning: tuning)
    }
}

/// `[Discovery] LibvirtMemory=`: `yes` is libvirt's default
/// `memory_backing_dir` (files in `/var/lib/libvirt/qemu/ram/ID-NAME/`); a path
/// is qemu.conf's `memory_backing_dir` (libvirt adds `libvirt/qemu/`).
package enum LibvirtMemory: Sendable, Equatable, CustomStringConvertible {
    case standard
    case backingDirectory(String)

    /// The directory whose `ID-NAME` subdirectories hold the RAM files.
    package var domainsDirectory: String {
        switch self {
        case .standard: "/var/lib/libvirt/qemu/ram"
        case let .backingDirectory(dir): (dir.hasSuffix("/") ? String(dir.dropLast()) : dir) + "/libvirt/qemu"
        }
    }

    package var description: String {
        switch self {
        case .standard: "yes"
        case let .backingDirectory(dir): dir
        }
    }
}

/// `[Guest] PopulateOnDeflate=`: which of the memory a guest takes back the
/// agent allocates again (and maps into QEMU) before the guest touches it.
package enum GuestPopulate: String, Sendable, Equatable, CaseIterable {
    case no
    /// Everything the guest takes back, as `balloonctl serve` does.
    case yes
    /// Only what the guest takes back on its own (pressure, its MemAvailable
    /// floor), taking its balloon below the target the agent set: that memory
    /// is about to be used. What a lower target releases is not: the guest
    /// may never touch it, and allocating it would count it against the budget.
    case belowTarget = "below-target"
}

/// `[Discovery] LibvirtRamMap=`: how a libvirt guest's RAM file maps to
/// guest-physical addresses. `auto`: only files below 2.75 GiB, where `pc`
/// and `q35` agree (all RAM below the PCI hole, one block at GPA 0).
package enum LibvirtRamMap: String, Sendable, Equatable, CaseIterable {
    case auto, pc, q35
}

/// Where a guest's balloond listens, as `[Guest] Channel=` spells it.
package enum GuestChannel: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case vsock(cid: UInt32, port: UInt32)
    case hybridVsock(path: String, port: UInt32)

    package var description: String {
        switch self {
        case let .unix(path): "unix:\(path)"
        case let .vsock(cid, port): "vsock:\(cid):\(port)"
        case let .hybridVsock(path, port): "hybrid-vsock:\(path):\(port)"
        }
    }
}

/// One guest: `/etc/balloon-hostd.d/NAME.conf`'s `[Guest]`, or a discovered
/// socket with the defaults.
package struct GuestConfig: Sendable, Equatable {
    package static let defaults = GuestConfig()

    /// `Channel=`: required in a file.
    package var channel: GuestChannel?
    /// `MemoryBackend=`: the guest's RAM file (memory-backend-file, share=on); frees reported frames.
    package var memoryBackend: String?
    /// `RamMap=`: guest-physical to file map (checked by balloon-hostd: linear, pc, q35, GPA:SIZE@OFFSET,…).
    package var ramMap = "linear"
    /// `RamSize=`: the guest's RAM; default the backend file's size, else the guest's MemTotal.
    package var ramSize: UInt64?
    /// `Min=`: the guest keeps at least this (a percentage is of RamSize).
    package var min: SizeSpec = .percent(25)
    /// `Max=`: the guest never has more than this.
    package var max: SizeSpec = .percent(100)
    /// `Shares=`: relative weight, more shares less taken.
    package var shares: UInt32 = 1000
    /// `Policy=`: whether the host policy moves this guest.
    package var policy: GuestPolicy = .auto
    /// `Target=`: a balloon target to keep applying (Policy=manual; an operator's set replaces it).
    package var target: UInt64?
    /// `FreeMemoryReporting=`: ask the guest to report free memory too.
    package var freeMemoryReporting = false
    /// `PopulateOnDeflate=`: allocate the RAM file again for frames the guest
    /// takes back. Not all of them in the agent: under a budget that counts
    /// memory the guest may never touch (bench-host on 4d8c0ce: `yes` 345.2 s
    /// over the budget, `no` 243.9 s, in one run; docs/hostd.md); but without
    /// it an instant burst into memory the balloon held ran 1.68x as long as
    /// without a balloon (`yes`: 1.05x). `below-target` allocates what the
    /// guest takes back on its own, the burst's memory.
    package var populateOnDeflate: GuestPopulate = .belowTarget
    /// `QMP=`: a unix socket speaking QEMU's QMP balloon dialect (docs/qmp.md).
    package var qmp: String?

    package init() {}
}

/// Everything balloon-hostd runs from: the main file and every guest file.
package struct HostdSetup: Sendable, Equatable {
    package var config: HostdConfig
    /// By name (the file name without `.conf`).
    package var guests: [String: GuestConfig]
    /// The guest files' paths, by name.
    package var guestFiles: [String: String]
    /// The files read, in order.
    package var sources: [String]

    package init(config: HostdConfig = HostdConfig(), guests: [String: GuestConfig] = [:], guestFiles: [String: String] = [:], sources: [String] = []) {
        self.config = config
        self.guests = guests
        self.guestFiles = guestFiles
        self.sources = sources
    }
}

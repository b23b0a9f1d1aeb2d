// SPDX-License-Identifier: Apache-2.0

/// Cold page cache reclaim under a pressure guard, pure (`[FreeMemory]
/// ReclaimColdCache=`, docs/free-memory.md): while the guest shows no sign of
/// needing its cache, reclaim a small step every `interval` (Senpai-style
/// feedback); at the first sign — PSI `some` stall time, or refaults of file
/// pages (cache that was reclaimed and is read back) — stop, and wait twice
/// as long before the next step, up to `maxBackoff`. The cache it frees
/// becomes free memory the free-memory mode returns to the host.
public struct ColdCacheGovernor: Sendable, Equatable {
    public struct Policy: Sendable, Equatable {
        /// Bytes asked of `memory.reclaim` per step.
        public var step: UInt64 = 32 << 20
        /// Between steps while the guest is calm.
        public var interval: Duration = .seconds(2)
        /// The longest wait after pressure.
        public var maxBackoff: Duration = .seconds(120)
        /// PSI `some` stall per interval that counts as pressure: 0.2%.
        public var stallPerMille: UInt64 = 2
        /// File refaults per interval that count as pressure (4 KiB pages):
        /// 1 MiB read back means the reclaim reached cache in use.
        public var refaultPages: UInt64 = 256
        /// Cold cache (of the lists counted) below this is left alone: too little is cold.
        public var keepCold: UInt64 = 32 << 20
        /// Whether `Active(file)` counts as cold too: yes for regrowth. A
        /// thrash's refaults leave its cache on the active list (in a TCG
        /// guest, `Inactive(file)` 0.1 MiB, `Active(file)` 600 MiB after one),
        /// and without memory pressure nothing ages that list once the
        /// workload has ended; the refault and stall feedback still guards
        /// cache in use. No for the mode, which takes only inactive cache.
        public var activeIsCold = false

        public init() {}
    }

    /// What the caller reads before each decision.
    public struct Sample: Sendable, Equatable {
        /// PSI memory `some` total (nil without PSI).
        public var someStall: Duration?
        /// /proc/vmstat `workingset_refault_file` (or `workingset_refault` on old kernels).
        public var refaults: UInt64
        /// /proc/meminfo `Inactive(file)`.
        public var inactiveFile: UInt64
        /// /proc/meminfo `Active(file)`.
        public var activeFile: UInt64

        public init(someStall: Duration?, refaults: UInt64, inactiveFile: UInt64, activeFile: UInt64 = 0) {
            self.someStall = someStall
            self.refaults = refaults
            self.inactiveFile = inactiveFile
            self.activeFile = activeFile
        }
    }

    public enum Decision: Sendable, Equatable {
        /// Ask the kernel to reclaim this many bytes now; decide again after `interval`.
        case reclaim(UInt64)
        /// Pressure was seen: nothing now; decide again after this long.
        case backOff(Duration)
        /// Nothing cold enough: decide again after `interval`.
        case nothingCold
    }

    public var policy: Policy
    public private(set) var backoff: Duration?
    private var last: Sample?
    private var lastAt: Duration?

    public init(policy: Policy = Policy()) { self.policy = policy }

    /// Whether the last decision was to back off.
    public var backingOff: Bool { backoff != nil }

    public mutating func decide(_ sample: Sample, now: Duration) -> Decision {
        defer {
            last = sample
            lastAt = now
        }
        // The first sample only sets the baselines.
        guard let last, let lastAt else { return .nothingCold }
        let elapsed = max(now - lastAt, .milliseconds(1))
        var stall = Duration.zero
        if let after = sample.someStall, let before = last.someStall, after > before { stall = after - before }
        let stalled = micros(stall) * 1000 > micros(elapsed) * policy.stallPerMille
        let refaulted = sample.refaults > last.refaults && sample.refaults - last.refaults > policy.refaultPages
        if stalled || refaulted {
            let next = min((backoff ?? policy.interval) * 2, policy.maxBackoff)
            backoff = next
            return .backOff(next)
        }
        backoff = nil
        let cold = sample.inactiveFile + (policy.activeIsCold ? sample.activeFile : 0)
        guard cold > policy.keepCold else { return .nothingCold }
        return .reclaim(min(policy.step, cold - policy.keepCold))
    }
}

private func micros(_ d: Duration) -> UInt64 {
    let (seconds, attoseconds) = d.components
    return seconds < 0 ? 0 : UInt64(seconds) * 1_000_000 + UInt64(attoseconds / 1_000_000_000_000)
}

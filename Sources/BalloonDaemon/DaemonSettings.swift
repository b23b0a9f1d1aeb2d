// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonController
import BalloonSystem
import Logging

/// balloond.conf turned into the settings of the daemon's parts, at start
/// and at each reload (`Reload.swift`).
extension Daemon {
    /// `auto` follows the system: with THP `always` the kernel already uses
    /// huge pages where free, and MADV_HUGEPAGE would add direct compaction
    /// stalls (which count as memory pressure); with `madvise` huge pages come
    /// only when asked for.
    static func hugePageAdvice(_ mode: HugePageMode) -> HugePageAdvice {
        switch mode {
        case .yes: return .advise
        case .no: return .forbid
        case .auto: return systemHugePageMode() == "madvise" ? .advise : .leave
        }
    }

    static func limits(_ config: BalloondConfig, memoryTotal: UInt64) -> BalloonLimits {
        BalloonLimits(
            memoryTotal: memoryTotal,
            maxBalloon: config.maxBalloon.resolve(memTotal: memoryTotal),
            availableFloor: config.floorBytes(memTotal: memoryTotal),
            chunkSize: config.chunkSize,
            pageSize: UInt64(PageSize.bytes))
    }

    static func policy(_ config: BalloondConfig) -> PressurePolicy {
        var policy = PressurePolicy()
        policy.lightStepPercent = config.lightStepPercent
        policy.floorMargin = config.floorMargin
        policy.quietPeriod = config.quietPeriod
        policy.firstQuietPeriod = config.firstQuietPeriod
        policy.regrowAgainAfter = config.regrowAgainAfter
        return policy
    }
}

extension Logger.Level {
    public init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}

// SPDX-License-Identifier: Apache-2.0

/// The policy for a `[Policy]` section.
public func makePolicy(_ settings: PolicySettings) -> any HostPolicy {
    switch settings.mode {
    case .manual:
        return ManualPolicy(interval: settings.interval ?? .seconds(10))
    case .auto:
        var tuning = settings.tuning
        if let step = settings.maxStep { tuning.maxStep = step }
        return AutoPolicy(interval: settings.interval ?? .seconds(1), reserve: settings.hostReserve, tuning: tuning)
    case .proxmox:
        return ProxmoxPolicy(
            interval: settings.interval ?? .seconds(10), maxChange: settings.maxStep ?? 100 << 20, fill: settings.proxmoxTarget)
    case .mom:
        return MoMPolicy(interval: settings.interval ?? .seconds(10), maxStep: settings.maxStep)
    }
}

/// `Mode=manual`: the agent only samples and shows; operators set targets.
public struct ManualPolicy: HostPolicy {
    public var mode: PolicyMode { .manual }
    public let interval: Duration

    public init(interval: Duration) { self.interval = interval }

    public mutating func round(host: HostSample, guests: [GuestState], now: Duration) -> [TargetChange] { [] }
    public mutating func sampled(guest: GuestState, host: HostSample, now: Duration) -> [TargetChange] { [] }
}

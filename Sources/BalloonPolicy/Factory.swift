// SPDX-License-Identifier: Apache-2.0

/// The policy for a `[Policy]` section.
public func makePolicy(_ settings: PolicySettings) -> any HostPolicy {
    switch settings.mode {
    case .manual, .auto, .proxmox, .mom: ManualPolicy(interval: settings.interval ?? .seconds(10))
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

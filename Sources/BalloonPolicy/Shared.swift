// SPDX-License-Identifier: Apache-2.0

// Helpers every policy shares: a guest's bounds, signed byte arithmetic,
// counter rates between samples and moving averages (MoM's StatAvg).

extension GuestState {
    /// The policy may set this guest's target: `Policy=auto`, connected.
    public var managed: Bool { connected && limits.policy == .auto }

    /// The smallest target allowed: the guest never has more than Max.
    public var lowestTarget: UInt64 { ramSize - Swift.min(limits.max, ramSize) }

    /// The largest target allowed: the guest always keeps Min.
    public var highestTarget: UInt64 { Swift.max(ramSize - Swift.min(limits.min, ramSize), lowestTarget) }

    /// `target` clamped to [lowestTarget, highestTarget].
    public func clamped(_ target: Int64) -> UInt64 {
        UInt64(Swift.min(Swift.max(target, Int64(lowestTarget)), Int64(highestTarget)))
    }

    /// What the guest has now (RAM minus the balloon as it stands).
    var memory: Int64 { Int64(ramSize) - Int64(Swift.min(actual, ramSize)) }
}

extension UInt64 {
    /// Signed, for arithmetic that may go below zero.
    var signed: Int64 { Int64(clamping: self) }
}

extension Int64 {
    /// Bytes, clamped at zero.
    var bytes: UInt64 { UInt64(Swift.max(self, 0)) }
}

/// Events per second of a cumulative counter between two samples; nil when
/// either is missing, no time passed, or the counter went backwards (the
/// guest restarted: no rate, rather than a huge one).
func rate(_ new: UInt64?, _ old: UInt64?, over elapsed: Duration) -> Double? {
    guard let new, let old, new >= old, elapsed > .zero else { return nil }
    return Double(new - old) / elapsed.seconds
}

extension Duration {
    /// Seconds as a Double (policies work in rates).
    var seconds: Double {
        let (s, a) = components
        return Double(s) + Double(a) / 1e18
    }
}

/// The mean of the last `capacity` values (MoM's `StatAvg` over its sample
/// history); a ring, so adding is O(1) and allocation-free once full.
struct MovingAverage: Sendable, Equatable {
    let capacity: Int
    private(set) var values: [Double] = []
    private var next = 0

    init(capacity: Int) { self.capacity = Swift.max(1, capacity) }

    mutating func add(_ value: Double) {
        if values.count < capacity {
            values.append(value)
        } else {
            values[next] = value
            next = (next + 1) % capacity
        }
    }

    var mean: Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
}

/// Bytes in MiB with one decimal, for reasons ("128 MiB", "86.8 MiB").
func mib(_ bytes: Int64) -> String {
    let tenths = (bytes.magnitude * 10 + (1 << 19)) >> 20
    let sign = bytes < 0 && tenths > 0 ? "-" : ""
    return tenths % 10 == 0 ? "\(sign)\(tenths / 10) MiB" : "\(sign)\(tenths / 10).\(tenths % 10) MiB"
}

/// A non-negative figure (a percentage, seconds) with one decimal, for reasons ("2.5").
func tenths(_ x: Double) -> String {
    let t = Int((x * 10).rounded())
    return "\(t / 10).\(t % 10)"
}

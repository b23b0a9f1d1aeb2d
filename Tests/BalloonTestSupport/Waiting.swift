// SPDX-License-Identifier: Apache-2.0
import Foundation

/// Waits until `condition` holds, checking every `interval`, for at most
/// `timeout`. Returns whether it held: the caller asserts on that, so a test
/// waits for a state, never for a fixed time, and a deadline only bounds a
/// failure.
@discardableResult
public func waitUntil(
    timeout: Duration = .seconds(10), interval: Duration = .milliseconds(10), _ condition: () throws -> Bool
) rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try condition() { return true }
        if clock.now >= deadline { return false }
        Thread.sleep(forTimeInterval: interval.seconds)
    }
}

/// Like `waitUntil`, for a value that appears: returns it, or nil at the deadline.
public func waitFor<T>(
    timeout: Duration = .seconds(10), interval: Duration = .milliseconds(10), _ produce: () throws -> T?
) rethrows -> T? {
    var found: T?
    try waitUntil(timeout: timeout, interval: interval) {
        found = try produce()
        return found != nil
    }
    return found
}

extension Duration {
    /// The duration in seconds, as a Double (for APIs that take TimeInterval).
    public var seconds: Double {
        let (s, attos) = components
        return Double(s) + Double(attos) / 1e18
    }
}

// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import BalloonPolicy
import Testing

/// A `HostMemory=` budget's sample (HostSampler.swift): what is behind the
/// guests against the budget, and by how much they exceed it.
struct HostBudgetTests {
    let mib: UInt64 = 1 << 20

    @Test func underTheBudgetWhatIsLeftIsAvailable() {
        let s = HostBudget.sample(budget: 2048 * mib, behindGuests: [512 * mib, 768 * mib], at: .seconds(3))
        #expect(s.total == 2048 * mib && s.available == 768 * mib && s.overBudget == 0 && s.at == .seconds(3))
    }

    @Test func overTheBudgetTheOvershootIsKept() {
        let s = HostBudget.sample(budget: 1024 * mib, behindGuests: [768 * mib, 656 * mib], at: .seconds(1))
        #expect(s.available == 0 && s.overBudget == 400 * mib)
    }
}

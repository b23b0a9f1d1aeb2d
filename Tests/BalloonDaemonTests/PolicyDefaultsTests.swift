// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonController
import Testing

@testable import BalloonDaemon

/// `[Pressure]`'s defaults live twice: in `BalloondConfig` (what
/// `--dump-config` shows) and in `PressurePolicy` (what the controller's own
/// tests run on), since BalloonController does not see BalloonConfig. The
/// daemon builds the policy from the config; with no config file the two
/// must be the same policy.
@Suite struct PolicyDefaultsTests {
    @Test func theConfigsDefaultsAreThePressurePolicysDefaults() {
        #expect(Daemon.policy(BalloondConfig()) == PressurePolicy())
    }

    /// Each `[Pressure]` key the policy has reaches it: a key left out of
    /// `Daemon.policy` would still pass the test above.
    @Test func everyPressureKeyReachesThePolicy() {
        var config = BalloondConfig()
        config.lightStepPercent = 25
        config.floorMargin = 128 << 20
        config.quietPeriod = .seconds(90)
        config.firstQuietPeriod = .seconds(20)
        config.regrowAgainAfter = .seconds(12)
        let policy = Daemon.policy(config)
        #expect(policy.lightStepPercent == 25)
        #expect(policy.floorMargin == 128 << 20)
        #expect(policy.quietPeriod == .seconds(90))
        #expect(policy.firstQuietPeriod == .seconds(20))
        #expect(policy.regrowAgainAfter == .seconds(12))
    }
}

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
}

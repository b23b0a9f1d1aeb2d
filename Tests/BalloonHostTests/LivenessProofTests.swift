// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import Testing

/// Protocol rule 5's arithmetic, with times given by hand: frees are
/// allowed within half the grace time of a sign of life of the reporting
/// lifetime, and not at all before the lifetime is known.
struct LivenessProofTests {
    let grace = Duration.seconds(4)

    @Test func nothingIsFreedBeforeTheLifetimeIsKnown() {
        let proof = LivenessProof()
        #expect(!proof.allowsFreeing(now: .seconds(1)))
        #expect(proof.instance == nil)
    }

    @Test func theReportingReplyIsASignOfLifeForHalfTheGrace() {
        var proof = LivenessProof()
        proof.start(instance: "aaaa", grace: grace, sentAt: .seconds(10))
        #expect(proof.instance == "aaaa" && proof.checksLiveness)
        #expect(proof.allowsFreeing(now: .seconds(12)))
        #expect(!proof.allowsFreeing(now: .milliseconds(12_001)))
        #expect(proof.finishedWithinGrace(now: .seconds(14)))
        #expect(!proof.finishedWithinGrace(now: .milliseconds(14_001)))
    }

    @Test func aReplyProvesOnlyItsOwnLifetimeAndNeverGoesBack() {
        var proof = LivenessProof()
        proof.start(instance: "aaaa", grace: grace, sentAt: .seconds(10))
        proof.proven(instance: "bbbb", sentAt: .seconds(20))
        #expect(!proof.allowsFreeing(now: .seconds(21)))
        proof.proven(instance: "aaaa", sentAt: .seconds(20))
        #expect(proof.allowsFreeing(now: .seconds(21)))
        proof.proven(instance: "aaaa", sentAt: .seconds(15))  // an older request answered late
        #expect(proof.provenAt == .seconds(20))
    }

    @Test func aResetWaitsForTheNextLifetime() {
        var proof = LivenessProof()
        proof.start(instance: "aaaa", grace: grace, sentAt: .seconds(10))
        proof.reset()
        #expect(!proof.allowsFreeing(now: .seconds(10)))
        #expect(proof.instance == nil)
    }

    @Test func aDaemonWithoutLifetimeOrLingerIsNotChecked() {
        var legacy = LivenessProof()
        legacy.start(instance: nil, grace: nil, sentAt: .seconds(1))
        #expect(legacy.allowsFreeing(now: .seconds(1000)) && !legacy.checksLiveness && legacy.instance == nil)
        var inProcess = LivenessProof()
        inProcess.start(instance: "cccc", grace: .zero, sentAt: .seconds(1))
        #expect(inProcess.allowsFreeing(now: .seconds(1000)) && !inProcess.checksLiveness)
        #expect(inProcess.instance == "cccc")  // still named, so a successor refuses its acks
        #expect(inProcess.finishedWithinGrace(now: .seconds(1000)))
    }
}

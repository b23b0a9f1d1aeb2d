// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonSystem
import BalloonTestSupport
import Glibc
import Testing
@testable import BalloonDaemon

/// A holder the OOM killer takes is memory the balloon no longer holds, however
/// the daemon learns of it (ChunkStack.reapDeadHolders).
@Suite struct HolderLossTests {
    /// The holder died before a partial shrink reached it: the shrink finds it
    /// gone and reaps it, and the next reap counts the rest of its chunk as
    /// lost. Before, the chunk stayed in the balloon's count with a holder
    /// waitpid no longer knew (ECHILD, "cannot check balloon holder").
    @Test func aHolderThatDiedBeforeAShrinkIsCountedLost() throws {
        let chunks = holderChunkStack()
        defer { chunks.releaseAll() }
        var warnings: [String] = []
        chunks.warn = { warnings.append($0) }
        let size: UInt64 = 4 << 20
        try chunks.grow(by: size)
        let pid = try #require(chunks.holderPIDs.first)
        ignoreSIGPIPE()  // The shrink writes to the dead holder's pipe.
        #expect(kill(pid, SIGKILL) == 0)
        // A light step of 1 MiB: the dead holder never answers.
        chunks.shrink(by: 1 << 20)
        #expect(chunks.reapDeadHolders() == size - (1 << 20))
        #expect(chunks.heldBytes == 0)
        #expect(chunks.holderPIDs.isEmpty)
        #expect(warnings.isEmpty, "\(warnings)")
    }
}

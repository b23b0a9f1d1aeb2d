// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import Glibc
import Testing

private let MiB: UInt64 = 1 << 20
private let page: UInt64 = 4096

/// Real holes in a real tmpfs file: st_blocks drops by exactly the punched
/// amount, the size stays, data outside the range is untouched.
@Suite struct PuncherTests {
    @Test func punchFreesBlocksAndKeepsTheRest() throws {
        let file = ShmFile(size: Int(16 * MiB))
        defer { file.remove() }
        let before = file.status()
        #expect(before.size == 16 * MiB)
        #expect(before.allocatedBytes >= 16 * MiB)

        let puncher = try BackendPuncher(path: file.path)
        #expect(puncher.ramSize == 16 * MiB)
        var ledger = FrameLedger(map: try RamMap.linear(size: puncher.ramSize), punchRate: 1 << 40, now: .zero)
        // 2 MiB at 4 MiB as two touching ranges (one fallocate), and 4 KiB at 10 MiB.
        let data: JSON = ["seq": 1, "page-size": 4096, "ranges": [[1024, 256], [1280, 256], [2560, 1]]]
        let handled = ledger.handle(try GuestEvent(.framesInflated, data: data), now: .zero)
        let decision = try #require(handled)
        #expect(decision.punches.count == 2)
        #expect(puncher.punch(decision.punches) == [true, true])
        #expect(puncher.punches == 2)
        #expect(puncher.bytesFreed == 2 * MiB + page)

        let after = file.status()
        #expect(after.size == before.size)
        #expect(before.blocks - after.blocks == (2 * MiB + page) / 512)
        #expect(file.isFilled(4 * MiB, Int(2 * MiB), with: 0))
        #expect(file.isFilled(10 * MiB, Int(page), with: 0))
        #expect(file.isFilled(4 * MiB - page, Int(page), with: 0xAB))
        #expect(file.isFilled(6 * MiB, Int(4 * MiB), with: 0xAB))
        #expect(file.isFilled(10 * MiB + page, Int(page), with: 0xAB))
        #expect(file.isFilled(0, Int(4 * MiB), with: 0xAB))
    }

    @Test func outsideRamIsNeverPunched() throws {
        // The file is 16 MiB but only the first 8 MiB are guest RAM.
        let file = ShmFile(size: Int(16 * MiB))
        defer { file.remove() }
        let before = file.status()
        let puncher = try BackendPuncher(path: file.path, ramSize: 8 * MiB)
        var ledger = FrameLedger(map: try RamMap.linear(size: puncher.ramSize), punchRate: 1 << 40, now: .zero)
        let data: JSON = ["seq": 3, "page-size": 4096, "ranges": [[2048, 16], [2047, 2], [3000, 1]]]
        let handled = ledger.handle(try GuestEvent(.framesInflated, data: data), now: .zero)
        let decision = try #require(handled)
        #expect(decision.refused.outsideRam == 3)
        #expect(decision.punches.isEmpty)
        puncher.punch(decision.punches)
        // The puncher itself refuses a range past guest RAM, too.
        #expect(puncher.punch([RamMap.FileRange(offset: 8 * MiB - page, length: 2 * page)]) == [false])
        #expect(puncher.punch([RamMap.FileRange(offset: 12 * MiB, length: page)]) == [false])
        #expect(puncher.punches == 0)
        #expect(puncher.failures == 2)
        #expect(file.status().blocks == before.blocks)
        #expect(file.isFilled(0, Int(16 * MiB), with: 0xAB))
    }

    /// `memory-backend-state`: ok while the path names the open file;
    /// missing once it was renamed or removed, though punches still work.
    @Test func stateFollowsThePath() throws {
        let file = ShmFile(size: Int(MiB))
        defer { file.remove() }
        let puncher = try BackendPuncher(path: file.path)
        #expect(puncher.state == BackendState(.ok))
        #expect(rename(file.path, file.path + ".moved") == 0)
        #expect(puncher.state == BackendState(.missing))
        #expect(rename(file.path + ".moved", file.path) == 0)
        #expect(puncher.state == BackendState(.ok))
        file.remove()
        #expect(puncher.state == BackendState(.missing))
        #expect(puncher.punch([.init(offset: 0, length: page)]) == [true] && puncher.state.condition == .missing)
    }

    @Test func backendErrors() throws {
        let file = ShmFile(size: Int(MiB))
        defer { file.remove() }
        #expect(throws: HostError.self) { try BackendPuncher(path: file.path, ramSize: 2 * MiB) }
        #expect(throws: HostError.self) { try BackendPuncher(path: "/dev/shm/does-not-exist-balloonhost") }
        #expect(throws: HostError.self) { try BackendPuncher(path: "/dev/null") }
    }
}

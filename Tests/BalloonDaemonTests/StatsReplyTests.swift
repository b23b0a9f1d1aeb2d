// SPDX-License-Identifier: Apache-2.0
@testable import BalloonDaemon
import BalloonProtocol
import Glibc
import Testing

/// The `stats` reply's page-cache refaults (`file-refaults`), which no
/// virtio stat carries and the host's `auto` policy reads as pressure.
struct StatsReplyTests {
    /// A /proc of its own with this vmstat (and a meminfo).
    func reply(vmstat: String) throws -> StatsReply {
        let dir = "/tmp/balloond-statsreply-\(getpid())"
        mkdir(dir, 0o700)
        defer { for f in ["meminfo", "vmstat"] { unlink("\(dir)/\(f)") }; rmdir(dir) }
        for (name, text) in [("meminfo", "MemTotal:       1000 kB\nMemAvailable:    500 kB\n"), ("vmstat", vmstat)] {
            let f = fopen("\(dir)/\(name)", "w")
            fputs(text, f)
            fclose(f)
        }
        return try MemorySampler(procRoot: dir).statsReply(target: 0, actual: 0)
    }

    @Test func theFileCountWhereTheKernelSplitsIt() throws {
        // Linux 5.9 on: anon and file apart; only the file count is the cache's.
        let split = try reply(vmstat: "nr_free_pages 1\nworkingset_refault_anon 7\nworkingset_refault_file 290217\n")
        #expect(split.fileRefaults == 290_217)
        // Before 5.9 (the RHEL 8 fixture's kernel): one count, all of it file pages.
        let one = try reply(vmstat: "nr_free_pages 1\nworkingset_refault 42\n")
        #expect(one.fileRefaults == 42)
        // Neither: absent from the message, not 0.
        let none = try reply(vmstat: "nr_free_pages 1\n")
        #expect(none.fileRefaults == nil)
        #expect(!none.json.serialized().contains("file-refaults"))
        #expect(split.json.serialized().contains("file-refaults"))
    }

    @Test func thisKernelsCountReachesTheReply() throws {
        let sampler = try MemorySampler()
        let before = try #require(sampler.fileRefaults(), "this kernel has workingset_refault_file")
        let reply = sampler.statsReply(target: 0, actual: 0)
        #expect(try #require(reply.fileRefaults) >= before)
        // And back through the wire format, as the host reads it.
        #expect(try StatsReply(json: reply.json).fileRefaults == reply.fileRefaults)
    }
}

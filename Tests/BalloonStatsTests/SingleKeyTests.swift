// SPDX-License-Identifier: Apache-2.0
import Testing

@testable import BalloonStats

/// `ProcParse.meminfo(_:key:)` and `vmstat(_:key:)` read one value without the
/// dictionary; they must agree with the dictionary on every key of every real
/// capture, and on the malformed lines the dictionary skips.
@Suite struct SingleKeyReads {
    static let kernels = ["debian12-guest-6.1", "linux-3.2.0-ubuntu", "linux-3.4.5-android", "linux-4.18-rhel8", "linux-6.18-local"]

    @Test(arguments: kernels) func meminfoAgreesWithTheDictionary(kernel: String) throws {
        let bytes = try Fixture.bytes(kernel, "meminfo")
        let all = ProcParse.meminfo(bytes)
        #expect(all.count > 10)
        bytes.withUnsafeBytes { raw in
            for (key, value) in all { #expect(ProcParse.meminfo(raw, key: key) == value, "\(key)") }
            #expect(ProcParse.meminfo(raw, key: "NoSuchKey") == nil)
            #expect(ProcParse.meminfo(raw, key: "Mem") == nil)  // a prefix of MemFree is not MemFree
        }
    }

    @Test(arguments: kernels) func vmstatAgreesWithTheDictionary(kernel: String) throws {
        let bytes = try Fixture.bytes(kernel, "vmstat")
        let all = ProcParse.vmstat(bytes)
        #expect(all.count > 10)
        bytes.withUnsafeBytes { raw in
            for (key, value) in all { #expect(ProcParse.vmstat(raw, key: key) == value, "\(key)") }
            #expect(ProcParse.vmstat(raw, key: "nr_free") == nil)  // a prefix of nr_free_pages
        }
    }

    @Test(arguments: kernels) func vmstatByPrefixIsTheDictionaryFiltered(kernel: String) throws {
        let bytes = try Fixture.bytes(kernel, "vmstat")
        let prefixes = ["allocstall", "pgscan_direct", "oom_kill"]
        let expected = ProcParse.vmstat(bytes).filter { entry in prefixes.contains { entry.key.hasPrefix($0) } }
        bytes.withUnsafeBytes { raw in
            #expect(ProcParse.vmstat(raw, keyPrefixes: prefixes) == expected)
            #expect(ProcParse.vmstat(raw, keyPrefixes: []) == [:])
            #expect(ProcParse.vmstat(raw, keyPrefixes: [""]) == ProcParse.vmstat(bytes))
            // Prefixes that share a first byte, one longer than any key, one a whole key.
            let shared = ["pgscan_direct", "pgmigrate_success", "pgsteal_kswapd_and_much_more_than_any_key", "pgfault"]
            let sharedExpected = ProcParse.vmstat(bytes).filter { entry in shared.contains { entry.key.hasPrefix($0) } }
            #expect(!sharedExpected.isEmpty)
            #expect(ProcParse.vmstat(raw, keyPrefixes: shared) == sharedExpected)
        }
    }

    @Test func linesWithoutNewlinesAndEmptyInput() {
        let text = Array("oom_kill 3\n\n\noom_kills 4\r\noom_kill 5".utf8)
        text.withUnsafeBytes { raw in
            #expect(ProcParse.vmstat(raw, keyPrefixes: ["oom"]) == ["oom_kill": 5, "oom_kills": 4])
            #expect(ProcParse.vmstat(raw, key: "oom_kill") == 5)
        }
        [UInt8]().withUnsafeBytes { raw in
            #expect(ProcParse.vmstat(raw, keyPrefixes: ["oom"]) == [:])
            #expect(ProcParse.vmstat(raw, key: "oom_kill") == nil)
        }
    }

    @Test func malformedLinesAreSkippedAsTheDictionarySkipsThem() {
        let text = Array("MemFree: 12 MB\nMemFreeX: 5 kB\nMemFree:\nInactive(file):  7 kB\nMemFree 3 kB\nMemFree:   9 kB trailing\n")
        text.withUnsafeBytes { raw in
            #expect(ProcParse.meminfo(raw, key: "MemFree") == nil)
            #expect(ProcParse.meminfo(raw, key: "Inactive(file)") == 7 * 1024)
            #expect(ProcParse.meminfo(raw, key: "MemFreeX") == 5 * 1024)
        }
        #expect(ProcParse.meminfo(text)["MemFree"] == nil)
        let twice = Array("MemFree: 1 kB\nMemFree: 2 kB")  // the last wins, as in the dictionary; no final newline
        twice.withUnsafeBytes { raw in #expect(ProcParse.meminfo(raw, key: "MemFree") == 2048) }
        #expect(ProcParse.meminfo(twice)["MemFree"] == 2048)
        let vm = Array("workingset_refault_file 42\nworkingset_refault_file x\npgsteal 1 2\n")
        vm.withUnsafeBytes { raw in
            #expect(ProcParse.vmstat(raw, key: "workingset_refault_file") == 42)
            #expect(ProcParse.vmstat(raw, key: "pgsteal") == nil)
        }
    }
}

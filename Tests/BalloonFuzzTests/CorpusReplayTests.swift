// SPDX-License-Identifier: Apache-2.0
import BalloonFuzz
import BalloonTestSupport
import Foundation
import Testing

/// Every seed and every input a fuzzer once crashed on, through the same
/// bodies `make fuzz` runs (docs/fuzzing.md): a broken invariant is a
/// precondition failure, which fails this test run, so each crash found
/// stays fixed. Fast: a few hundred small files.
@Suite struct CorpusReplayTests {
    static func files(_ directory: String) throws -> [String] {
        guard RepoFiles.exists(directory) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: RepoFiles.url(directory).path)
            .filter { !$0.hasPrefix(".") }.sorted().map { "\(directory)/\($0)" }
    }

    @Test("seed corpus replays", arguments: FuzzTarget.allCases)
    func corpus(_ target: FuzzTarget) throws {
        let seeds = try Self.files("fuzz/corpus/\(target.rawValue)")
        // make fuzz starts from these; an empty corpus would make its figures meaningless.
        #expect(seeds.count >= 3, "fuzz/corpus/\(target.rawValue) has \(seeds.count) seeds")
        for path in seeds { target.run(try RepoFiles.bytes(path)) }
    }

    @Test("kept crash inputs replay", arguments: FuzzTarget.allCases)
    func regressions(_ target: FuzzTarget) throws {
        for path in try Self.files("fuzz/regressions/\(target.rawValue)") { target.run(try RepoFiles.bytes(path)) }
    }

    /// Each directory under fuzz/ names a target, so no input is silently skipped.
    @Test func directoriesNameTargets() throws {
        for parent in ["fuzz/corpus", "fuzz/regressions"] {
            for path in try Self.files(parent) {
                let name = String(path.dropFirst(parent.count + 1))
                #expect(FuzzTarget(rawValue: name) != nil, "\(path) is not a fuzz target's directory")
            }
        }
    }

    /// The bodies see what the seeds are for: empty and one-byte inputs, and
    /// a truncated prefix of every seed, do not trap either.
    @Test("truncated seeds", arguments: FuzzTarget.allCases)
    func truncated(_ target: FuzzTarget) throws {
        target.run([])
        target.run([0])
        for path in try Self.files("fuzz/corpus/\(target.rawValue)") {
            let bytes = try RepoFiles.bytes(path)
            target.run(Array(bytes.prefix(bytes.count / 2)))
        }
    }
}

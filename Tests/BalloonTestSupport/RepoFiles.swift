// SPDX-License-Identifier: Apache-2.0
import Foundation

/// Files of the repository the tests were built from (docs, fixtures, shipped
/// configs), found from this source file's path so every test target reads the
/// same copy without bundling resources.
public enum RepoFiles {
    /// The repository's root directory.
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // BalloonTestSupport
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    public static func url(_ relativePath: String) -> URL { root.appendingPathComponent(relativePath) }

    public static func bytes(_ relativePath: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url(relativePath)))
    }

    public static func text(_ relativePath: String) throws -> String {
        String(decoding: try bytes(relativePath), as: UTF8.self)
    }

    public static func exists(_ relativePath: String) -> Bool {
        FileManager.default.fileExists(atPath: url(relativePath).path)
    }

    /// Real /proc captures: `Tests/BalloonStatsTests/Fixtures/<kernel>/<file>`.
    public static let procFixtures = "Tests/BalloonStatsTests/Fixtures"

    /// The kernels with captured /proc fixtures, sorted (for parameterized tests).
    public static func fixtureKernels() -> [String] {
        let dir = url(procFixtures)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []  // none: no kernels, the caller's test asserts on the count
        return names.filter { name in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: dir.appendingPathComponent(name).path, isDirectory: &isDir) && isDir.boolValue
        }.sorted()
    }
}

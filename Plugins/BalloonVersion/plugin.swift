// SPDX-License-Identifier: Apache-2.0
import Foundation
import PackagePlugin

/// Generates BalloonProtocol's `generatedBalloondVersion` from VERSION and git
/// (scripts/version.sh), so a build between releases says which commit it is
/// without any tracked file changing. The script rewrites the file only when
/// the version changes (no needless rebuilds).
///
/// A build command with its inputs declared, not a prebuild command: SwiftPM
/// runs prebuild commands only when it plans the build again (a manifest or
/// the set of source files changed; swiftlang/swift-package-manager#5476), so
/// binaries built after a commit went on saying the commit they were first
/// built on. This one runs again whenever HEAD moves (the HEAD reflog), the
/// index changes (a commit, `git add`), VERSION changes, or a source file is
/// edited (the `.dirty` suffix).
@main
struct BalloonVersion: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directoryURL
        let output = context.pluginWorkDirectoryURL.appending(path: "generated/GeneratedVersion.swift")
        let script = root.appending(path: "scripts/version.sh")
        var inputs = [script, root.appending(path: "VERSION"), root.appending(path: ".tarball-version")]
        if let git = gitDirectory(root) {
            inputs += ["HEAD", "logs/HEAD", "index", "packed-refs"].map { git.appending(path: $0) }
        }
        for case let module as SourceModuleTarget in context.package.targets {
            inputs += module.sourceFiles.map(\.url)
        }
        // A missing input would make the command run on every build.
        inputs = inputs.filter { FileManager.default.fileExists(atPath: $0.path) }
        return [
            .buildCommand(
                displayName: "balloond version from VERSION and git",
                executable: URL(filePath: "/bin/bash"),
                arguments: [script.path, "--swift", output.path],
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }

    /// The repository's git directory: `.git`, or in a linked worktree the
    /// directory its `.git` file names (`gitdir: PATH`); nil outside git.
    func gitDirectory(_ root: URL) -> URL? {
        let dotGit = root.appending(path: ".git")
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dotGit.path, isDirectory: &isDirectory) else { return nil }
        if isDirectory.boolValue { return dotGit }
        guard let text = try? String(contentsOf: dotGit, encoding: .utf8),
              let line = text.split(separator: "\n").first, line.hasPrefix("gitdir: ")
        else { return nil }
        let path = String(line.dropFirst("gitdir: ".count))
        return path.hasPrefix("/") ? URL(filePath: path) : root.appending(path: path)
    }
}

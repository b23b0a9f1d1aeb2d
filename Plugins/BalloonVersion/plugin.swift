// SPDX-License-Identifier: Apache-2.0
import Foundation
import PackagePlugin

/// Generates BalloonProtocol's `generatedBalloondVersion` from VERSION and git
/// (scripts/version.sh) before every build, so a build between releases says
/// which commit it is without any tracked file changing. The script rewrites
/// the file only when the version changes (no needless rebuilds).
@main
struct BalloonVersion: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        let script = context.package.directoryURL.appending(path: "scripts/version.sh")
        return [
            .prebuildCommand(
                displayName: "balloond version from VERSION and git",
                executable: URL(filePath: "/bin/bash"),
                arguments: [script.path, "--swift", output.appending(path: "GeneratedVersion.swift").path],
                outputFilesDirectory: output)
        ]
    }
}

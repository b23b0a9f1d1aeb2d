// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing

@testable import BalloonStats

/// Real /proc captures under Fixtures/<kernel>/ (see Fixtures/README.md).
enum Fixture {
    static func bytes(_ kernel: String, _ file: String) throws -> [UInt8] {
        let base = try #require(Bundle.module.resourceURL, "test bundle has no resources")
        let url = base.appendingPathComponent("Fixtures").appendingPathComponent(kernel).appendingPathComponent(file)
        return [UInt8](try Data(contentsOf: url))
    }

    static func exists(_ kernel: String, _ file: String) -> Bool {
        guard let base = Bundle.module.resourceURL else { return false }
        let url = base.appendingPathComponent("Fixtures").appendingPathComponent(kernel).appendingPathComponent(file)
        return FileManager.default.fileExists(atPath: url.path)
    }
}

extension Array where Element == UInt8 {
    init(_ s: String) { self = Array(s.utf8) }
}

let KiB: UInt64 = 1024
let MiB: UInt64 = 1024 * 1024

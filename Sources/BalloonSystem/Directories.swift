// SPDX-License-Identifier: Apache-2.0
import Glibc

extension ProcessControl {
    /// Creates the directory a socket path is in (mode 0755) if it is missing,
    /// as balloon-hostd does for its control socket outside systemd's
    /// RuntimeDirectory=. Only the last component is created.
    package static func makeDirectory(parentOf path: String) throws(SystemError) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        let directory = String(path[..<slash])
        if let code = bestEffortSyscall("mkdir", tolerating: [], { mkdir(directory, 0o755) }), code != .fileExists {
            throw SystemError("mkdir", subject: directory, errno: code)
        }
    }
}

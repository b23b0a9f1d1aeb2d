// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import BalloonSystem
import BalloonTestSupport
import Glibc
import Testing

/// Discovery: names from libvirt's and watched directories, the difference
/// between scans, and real inotify watches on a temporary directory.
@Suite struct Discovery {
    @Test func names() {
        #expect(DiscoveryScan.libvirtName("domain-3-web1") == "web1")
        #expect(DiscoveryScan.libvirtName("domain-12-db-primary") == "db-primary")
        #expect(DiscoveryScan.libvirtName("web1") == "web1")  // older libvirt
        #expect(DiscoveryScan.libvirtName(".tmp") == nil)
        #expect(DiscoveryScan.socketName("vm1.sock") == "vm1")
        #expect(DiscoveryScan.socketName("vm1") == "vm1")
        #expect(DiscoveryScan.socketName(".sock") == nil)
        #expect(DiscoveryScan.socketName(".hidden") == nil)
    }

    @Test func diff() {
        let (add, remove) = DiscoveryScan.diff(
            current: ["a": "/s/a.sock", "b": "/s/b.sock", "moved": "/s/old"],
            found: ["b": "/s/b.sock", "c": "/s/c.sock", "moved": "/s/new"])
        #expect(add == ["c": "/s/c.sock", "moved": "/s/new"])
        #expect(remove == ["a", "moved"])
        #expect(DiscoveryScan.diff(current: ["a": "/x"], found: ["a": "/x"]).add.isEmpty)
    }

    @Test func watchedDirectorySocketsComeAndGo() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let watch = try DiscoveryWatch(libvirt: false, directories: [dir.path])
        var lines: [String] = []
        #expect(watch.scan(log: { lines.append($0) }).isEmpty)
        #expect(lines == ["discovery: watching \(dir.path)"])

        // A socket and a plain file appear: the event comes, the scan finds the socket only.
        let listener = try StreamSocket.listenUnix(path: dir.path + "/vm1.sock")
        defer { listener.close() }
        let file = open(dir.path + "/notes", O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        close(file)
        #expect(waitUntil { watch.drain() })
        #expect(watch.scan(log: { _ in }) == ["vm1": dir.path + "/vm1.sock"])

        unlink(dir.path + "/vm1.sock")
        #expect(waitUntil { watch.drain() })
        #expect(watch.scan(log: { _ in }).isEmpty)
        // Nothing happened since: nothing to drain.
        #expect(!watch.drain())
    }

    @Test func parents() {
        #expect(DiscoveryScan.parent(of: "/a/b/c") == "/a/b")
        #expect(DiscoveryScan.parent(of: "/a/b/") == "/a")
        #expect(DiscoveryScan.parent(of: "/a") == "/")
        #expect(DiscoveryScan.parent(of: "/") == nil)
        #expect(DiscoveryScan.parent(of: "sockets") == ".")
        #expect(DiscoveryScan.parent(of: ".") == nil)
    }

    /// A directory made after the scan (two levels of it) is found through
    /// the events of its parents, with no reload.
    @Test func missingDirectoryIsWatchedOnceItExists() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let top = dir.path + "/later"
        let sub = top + "/sockets"
        let watch = try DiscoveryWatch(libvirt: false, directories: [sub])
        var lines: [String] = []
        #expect(watch.scan(log: { lines.append($0) }).isEmpty)
        #expect(lines == ["discovery: \(sub) does not exist; watching \(dir.path) for it"])
        #expect(!watch.drain())

        mkdir(top, 0o755)
        defer { rmdir(top) }
        #expect(waitUntil { watch.drain() })
        #expect(watch.scan(log: { lines.append($0) }).isEmpty)
        #expect(lines.last == "discovery: \(sub) does not exist; watching \(top) for it")
        // The watch on the temporary directory ended: making an unrelated
        // entry there is no event any more (the end of the watch is one).
        _ = watch.drain()
        close(open(dir.path + "/unrelated", O_CREAT | O_WRONLY | O_CLOEXEC, 0o600))
        defer { unlink(dir.path + "/unrelated") }
        #expect(!watch.drain())

        mkdir(sub, 0o755)
        defer { rmdir(sub) }
        #expect(waitUntil { watch.drain() })
        #expect(watch.scan(log: { lines.append($0) }).isEmpty)
        #expect(lines.last == "discovery: watching \(sub)")
        let listener = try StreamSocket.listenUnix(path: sub + "/g.sock")
        defer { listener.close(); unlink(sub + "/g.sock") }
        #expect(waitUntil { watch.drain() })
        #expect(watch.scan(log: { _ in }) == ["g": sub + "/g.sock"])
    }
}

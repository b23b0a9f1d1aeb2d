// SPDX-License-Identifier: Apache-2.0
@testable import BalloonHost
import BalloonConfig
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
        #expect(watch.scan(log: { _ in }) == ["vm1": DiscoveredGuest(socket: dir.path + "/vm1.sock")])

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
        #expect(watch.scan(log: { _ in }) == ["g": DiscoveredGuest(socket: sub + "/g.sock")])
    }

    @Test func libvirtRamDirectoriesAndMaps() {
        #expect(DiscoveryScan.libvirtRamDirectory("domain-3-web1") == "3-web1")
        #expect(DiscoveryScan.libvirtRamDirectory("domain-12-db-primary") == "12-db-primary")
        #expect(DiscoveryScan.libvirtRamDirectory("web1") == nil)  // older libvirt: no ID to match
        #expect(DiscoveryScan.libvirtRamDirectory("domain-x-web1") == nil)
        #expect(DiscoveryScan.libvirtRamFile(regularFiles: ["pc.ram"]) == "pc.ram")
        #expect(DiscoveryScan.libvirtRamFile(regularFiles: ["ram-node0", "ram-node1"]) == nil)
        #expect(DiscoveryScan.libvirtRamFile(regularFiles: []) == nil)
        // Below 2.75 GiB pc and q35 agree; above, auto does not guess.
        #expect(DiscoveryScan.libvirtRamMap(.auto, size: 512 << 20) == "linear")
        #expect(DiscoveryScan.libvirtRamMap(.auto, size: 0xB000_0000 - 4096) == "linear")
        #expect(DiscoveryScan.libvirtRamMap(.auto, size: 0xB000_0000) == nil)
        #expect(DiscoveryScan.libvirtRamMap(.q35, size: 4 << 30) == "q35")
        #expect(DiscoveryScan.libvirtRamMap(.pc, size: 4 << 30) == "pc")
        #expect(LibvirtMemory.standard.domainsDirectory == "/var/lib/libvirt/qemu/ram")
        #expect(LibvirtMemory.backingDirectory("/srv/ram/").domainsDirectory == "/srv/ram/libvirt/qemu")
    }

    /// libvirt's layout in temporary directories: the channel socket in
    /// `domain-ID-NAME/`, the RAM file in `ID-NAME/` under the memory
    /// directory; a RAM file made after the socket is an event and a new scan
    /// result (the agent then adds the guest again, with its backend).
    @Test func libvirtGuestWithItsRamFile() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let channels = dir.path + "/channel/target", memory = dir.path + "/ram/libvirt/qemu"
        for d in [dir.path + "/channel", channels, dir.path + "/ram", dir.path + "/ram/libvirt", memory, channels + "/domain-7-web1"] {
            mkdir(d, 0o755)
        }
        let socket = channels + "/domain-7-web1/org.balloond.0"
        let listener = try StreamSocket.listenUnix(path: socket)
        defer { listener.close() }
        let watch = try DiscoveryWatch(libvirt: true, directories: [], libvirtMemory: memory, libvirtChannels: channels)
        #expect(watch.scan(log: { _ in }) == ["web1": DiscoveredGuest(socket: socket)])

        mkdir(memory + "/7-web1", 0o700)
        #expect(waitUntil { watch.drain() })
        #expect(watch.scan(log: { _ in }) == ["web1": DiscoveredGuest(socket: socket)])
        let ram = memory + "/7-web1/pc.ram"
        let fd = open(ram, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        #expect(ftruncate(fd, 4 << 20) == 0)
        close(fd)
        #expect(waitUntil { watch.drain() })
        #expect(watch.scan(log: { _ in }) == ["web1": DiscoveredGuest(socket: socket, ramFile: ram)])
        let file = try DiscoveryWatch.openLibvirtRam(ram, socket: socket)
        #expect(try BackendPuncher(file: file).ramSize == 4 << 20)

        // A second file (a NUMA node, a DIMM): no single map, no backend.
        close(open(memory + "/7-web1/ram-node1", O_CREAT | O_RDWR | O_CLOEXEC, 0o600))
        #expect(waitUntil { watch.drain() })
        #expect(watch.scan(log: { _ in }) == ["web1": DiscoveredGuest(socket: socket)])
    }

    /// The RAM directory is the QEMU user's: what it could put there to lead
    /// the agent to another file is refused.
    @Test func libvirtRamFileChecks() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let socket = dir.path + "/org.balloond.0"
        let listener = try StreamSocket.listenUnix(path: socket)
        defer { listener.close() }
        let target = dir.path + "/elsewhere"
        close(open(target, O_CREAT | O_RDWR | O_CLOEXEC, 0o600))
        symlink(target, dir.path + "/pc.ram")
        #expect(throws: HostError.self) { _ = try DiscoveryWatch.openLibvirtRam(dir.path + "/pc.ram", socket: socket) }
        link(target, dir.path + "/hard.ram")
        let twoLinks = #expect(throws: HostError.self) { _ = try DiscoveryWatch.openLibvirtRam(dir.path + "/hard.ram", socket: socket) }
        #expect(twoLinks?.description.contains("one link") == true)
        unlink(dir.path + "/hard.ram")
        #expect((try? DiscoveryWatch.openLibvirtRam(target, socket: socket)) != nil)
        // Owned by someone else than the socket's owner (root can make one).
        if getuid() == 0 {
            #expect(chown(target, 65534, 65534) == 0)
            let foreign = #expect(throws: HostError.self) { _ = try DiscoveryWatch.openLibvirtRam(target, socket: socket) }
            #expect(foreign?.description.contains("belongs to uid 65534") == true)
        }
    }
}

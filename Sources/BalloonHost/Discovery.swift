// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonSystem
import Glibc

// Guests that come and go as sockets: libvirt's channel directory (one
// directory per running domain, `domain-ID-NAME/org.balloond.0`) and the
// `[Discovery] Directories=` (a socket `NAME` or `NAME.sock` is guest NAME).
// Any inotify event rescans every watched directory; the pure part says
// which guests the listings hold and what changed. With `LibvirtMemory=`,
// libvirt's RAM directory (`ID-NAME/` per running domain) is watched too,
// and a libvirt guest's RAM file becomes its memory backend.

/// A discovered guest: its socket and, for a libvirt guest when
/// `LibvirtMemory=` is on, the RAM file found in its domain's directory.
struct DiscoveredGuest: Equatable {
    var socket: String
    var ramFile: String?
}

/// Pure: names from directory entries, and the difference between scans.
enum DiscoveryScan {
    static let libvirtChannels = "/var/lib/libvirt/qemu/channel/target"
    static let libvirtSocket = "org.balloond.0"

    /// libvirt's `domain-ID-NAME` (older libvirt: `NAME`) → NAME.
    static func libvirtName(_ directory: String) -> String? {
        let parts = directory.split(separator: "-", maxSplits: 2, omittingEmptySubsequences: false)
        if parts.count == 3, parts[0] == "domain", !parts[1].isEmpty, parts[1].allSatisfy(\.isNumber), !parts[2].isEmpty {
            return String(parts[2])
        }
        return directory.hasPrefix(".") || directory.isEmpty ? nil : directory
    }

    /// A socket in a watched directory: `NAME.sock` or `NAME` → NAME.
    static func socketName(_ entry: String) -> String? {
        guard !entry.hasPrefix("."), !entry.isEmpty else { return nil }
        let name = entry.hasSuffix(".sock") ? String(entry.dropLast(5)) : entry
        return name.isEmpty ? nil : name
    }

    /// The directory above `path`; nil above `/` (or `.` for a relative path).
    static func parent(of path: String) -> String? {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        guard p != "/", p != "." else { return nil }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        let up = p[..<slash]
        return up.isEmpty ? "/" : String(up)
    }

    /// libvirt's channel directory `domain-ID-NAME` → `ID-NAME`, the name of
    /// the domain's directory under memory_backing_dir (both are libvirt's
    /// short name of the domain); nil for the older `NAME` layout.
    static func libvirtRamDirectory(_ channelDirectory: String) -> String? {
        let rest = channelDirectory.dropFirst("domain-".count)
        guard channelDirectory.hasPrefix("domain-"), let dash = rest.firstIndex(of: "-"), rest.startIndex < dash,
            rest[..<dash].allSatisfy(\.isNumber), rest.index(after: dash) < rest.endIndex
        else { return nil }
        return String(rest)
    }

    /// The RAM file among a domain directory's regular files: the only one
    /// (`pc.ram` for x86 `pc` and `q35`). With several (NUMA nodes, memory
    /// devices: one file each) no single RAM map describes them: none.
    static func libvirtRamFile(regularFiles: [String]) -> String? {
        regularFiles.count == 1 ? regularFiles[0] : nil
    }

    /// Below 2.75 GiB `pc` and `q35` put all RAM below the PCI hole, one block
    /// at GPA 0; larger files need the machine type (`LibvirtRamMap=`).
    static let libvirtAutoMapLimit: UInt64 = 0xB000_0000

    /// The `RamMap=` spelling for a libvirt RAM file of `size` bytes; nil
    /// when `auto` cannot know it.
    static func libvirtRamMap(_ setting: LibvirtRamMap, size: UInt64) -> String? {
        switch setting {
        case .pc: "pc"
        case .q35: "q35"
        case .auto: size < libvirtAutoMapLimit ? "linear" : nil
        }
    }

    /// What to add and remove to go from `current` to `found` (name → what
    /// was found); a guest whose socket (or RAM file) changed is removed and
    /// added again.
    static func diff<Found: Equatable>(current: [String: Found], found: [String: Found]) -> (add: [String: Found], remove: [String]) {
        var add: [String: Found] = [:]
        var remove: [String] = []
        for (name, path) in found where current[name] != path { add[name] = path }
        for (name, path) in current where found[name] != path { remove.append(name) }
        return (add, remove.sorted())
    }
}

/// The watches and the scan that reads the directories. A directory that
/// does not exist yet (libvirt not installed, a `Directories=` entry made
/// later) is waited for with a watch on its nearest existing parent: the
/// event of it (or of a directory on the way) being made triggers the scan
/// that watches it.
final class DiscoveryWatch {
    let inotify: Inotify
    let libvirt: Bool
    let directories: [String]
    /// `LibvirtMemory=`'s directory of `ID-NAME/` RAM directories.
    let libvirtMemory: String?
    /// libvirt's channel directory (another one in tests).
    let libvirtChannels: String
    /// Directories watched for sockets (or libvirt's domain directories) → watch.
    var watched: [String: Int32] = [:]
    /// A missing directory → the existing parent watched until it appears.
    var waiting: [String: (parent: String, watch: Int32)] = [:]

    init(libvirt: Bool, directories: [String], libvirtMemory: String? = nil, libvirtChannels: String = DiscoveryScan.libvirtChannels) throws(SystemError) {
        inotify = try Inotify()
        self.libvirt = libvirt
        self.directories = directories
        self.libvirtMemory = libvirt ? libvirtMemory : nil
        self.libvirtChannels = libvirtChannels
    }

    /// Lists every watched directory (adding watches as directories appear)
    /// and returns the guests found by name. Duplicates: first wins.
    func scan(log: (String) -> Void) -> [String: DiscoveredGuest] {
        var found: [String: DiscoveredGuest] = [:]
        var missing: [String] = []
        if libvirt {
            // libvirt makes a domain's RAM directory before QEMU starts; QEMU makes
            // the file just after the channel socket: the domain directory's
            // watch (set below, before it is listed) sees the file appear.
            var memory: String?
            if let dir = libvirtMemory {
                if watch(dir, log: log) { memory = dir } else { missing.append(dir) }
            }
            if watch(libvirtChannels, log: log) {
                for domain in entries(libvirtChannels) {
                    let dir = libvirtChannels + "/" + domain
                    guard let name = DiscoveryScan.libvirtName(domain), (try? FileStatus.of(dir))?.kind == .directory else { continue }
                    _ = watch(dir, log: log)
                    let socket = dir + "/" + DiscoveryScan.libvirtSocket
                    guard (try? FileStatus.of(socket))?.kind == .socket, found[name] == nil else { continue }
                    let ram = memory.flatMap { dir in DiscoveryScan.libvirtRamDirectory(domain).flatMap { ramFile(in: dir + "/" + $0, log: log) } }
                    found[name] = DiscoveredGuest(socket: socket, ramFile: ram)
                }
            } else {
                missing.append(libvirtChannels)
            }
        }
        for directory in directories {
            guard watch(directory, log: log) else {
                missing.append(directory)
                continue
            }
            for entry in entries(directory) {
                let path = directory + "/" + entry
                guard let name = DiscoveryScan.socketName(entry), (try? FileStatus.of(path))?.kind == .socket else { continue }
                if found[name] == nil { found[name] = DiscoveredGuest(socket: path) }
            }
        }
        awaitAppearance(of: missing, log: log)
        return found
    }

    /// Drains the pending events; true if any arrived.
    func drain() -> Bool {
        var any = false
        // Which event does not matter: the scan that follows reads everything
        // (and watches a removed directory again if it comes back).
        while let events = try? inotify.read(), !events.isEmpty { any = true }
        return any
    }

    private func watch(_ directory: String, log: (String) -> Void) -> Bool {
        do {
            let wd = try inotify.watch(directory)
            if watched.updateValue(wd, forKey: directory) == nil { log("discovery: watching \(directory)") }
            return true
        } catch {
            if watched.removeValue(forKey: directory) != nil { log("discovery: \(directory) no longer watched: \(error.cause)") }
            return false
        }
    }

    /// Watches the nearest existing parent of each missing directory, and
    /// ends the parent watches no longer needed.
    private func awaitAppearance(of missing: [String], log: (String) -> Void) {
        var now: [String: (parent: String, watch: Int32)] = [:]
        for directory in missing {
            var parent = DiscoveryScan.parent(of: directory)
            while let p = parent {
                if (try? FileStatus.of(p))?.kind == .directory, let wd = try? inotify.watch(p) {
                    now[directory] = (p, wd)
                    if waiting[directory]?.parent != p { log("discovery: \(directory) does not exist; watching \(p) for it") }
                    break
                }
                parent = DiscoveryScan.parent(of: p)
            }
        }
        // The kernel gives one watch per inode: keep any still in use.
        let inUse = Set(watched.values).union(now.values.map(\.watch))
        for (_, old) in waiting where !inUse.contains(old.watch) { inotify.unwatch(old.watch) }
        waiting = now
    }

    /// The RAM file in a libvirt domain's directory (watched, so that the
    /// file's creation rescans); symbolic links are not followed.
    private func ramFile(in directory: String, log: (String) -> Void) -> String? {
        guard (try? FileStatus.ofLink(directory))?.kind == .directory, watch(directory, log: log) else { return nil }
        let files = entries(directory).filter { (try? FileStatus.ofLink(directory + "/" + $0))?.kind == .regular }
        return DiscoveryScan.libvirtRamFile(regularFiles: files).map { directory + "/" + $0 }
    }

    /// Opens a libvirt guest's RAM file for punching. The directories are
    /// the QEMU user's, so the agent (root) must not be led elsewhere: the
    /// last component is not followed, and the file must be regular, have one
    /// link and belong to the owner of the guest's channel socket (QEMU's
    /// user, who can write the file anyway).
    static func openLibvirtRam(_ path: String, socket: String) throws(HostError) -> BackingFile {
        let socketOwner: UInt32
        do { socketOwner = try FileStatus.ofLink(socket).owner } catch {
            throw .usage("cannot stat the channel socket \(socket): \(error.cause)")
        }
        let descriptor: Descriptor
        do { descriptor = try Descriptor.open(path, flags: O_RDWR | O_NOFOLLOW) } catch {
            throw .usage("cannot open the RAM file \(path): \(error.cause)")
        }
        let status: FileStatus
        do { status = try descriptor.status(subject: path) } catch { throw .usage("cannot stat the RAM file \(path): \(error.cause)") }
        guard status.kind == .regular, status.links == 1 else {
            throw .usage("the RAM file \(path) is not a regular file with one link: not used")
        }
        guard status.owner == socketOwner else {
            throw .usage("the RAM file \(path) belongs to uid \(status.owner), the channel socket to uid \(socketOwner): not used")
        }
        return BackingFile(descriptor: descriptor, path: path)
    }

    private func entries(_ directory: String) -> [String] {
        ((try? directoryEntries(directory)) ?? []).sorted()
    }
}

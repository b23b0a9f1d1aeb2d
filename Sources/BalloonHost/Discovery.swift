// SPDX-License-Identifier: Apache-2.0
import BalloonSystem

// Guests that come and go as sockets: libvirt's channel directory (one
// directory per running domain, `domain-ID-NAME/org.balloond.0`) and the
// `[Discovery] Directories=` (a socket `NAME` or `NAME.sock` is guest NAME).
// Any inotify event rescans every watched directory; the pure part says
// which guests the listings hold and what changed.

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

    /// What to add and remove to go from `current` to `found` (name → socket
    /// path); a guest whose socket moved is removed and added again.
    static func diff(current: [String: String], found: [String: String]) -> (add: [String: String], remove: [String]) {
        var add: [String: String] = [:]
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
    /// Directories watched for sockets (or libvirt's domain directories) → watch.
    var watched: [String: Int32] = [:]
    /// A missing directory → the existing parent watched until it appears.
    var waiting: [String: (parent: String, watch: Int32)] = [:]

    init(libvirt: Bool, directories: [String]) throws(SystemError) {
        inotify = try Inotify()
        self.libvirt = libvirt
        self.directories = directories
    }

    /// Lists every watched directory (adding watches as directories appear)
    /// and returns the guests found: name → socket path. Duplicates: first wins.
    func scan(log: (String) -> Void) -> [String: String] {
        var found: [String: String] = [:]
        var missing: [String] = []
        if libvirt {
            if watch(DiscoveryScan.libvirtChannels, log: log) {
                for domain in entries(DiscoveryScan.libvirtChannels) {
                    let dir = DiscoveryScan.libvirtChannels + "/" + domain
                    guard let name = DiscoveryScan.libvirtName(domain), (try? FileStatus.of(dir))?.kind == .directory else { continue }
                    _ = watch(dir, log: log)
                    let socket = dir + "/" + DiscoveryScan.libvirtSocket
                    if (try? FileStatus.of(socket))?.kind == .socket, found[name] == nil { found[name] = socket }
                }
            } else {
                missing.append(DiscoveryScan.libvirtChannels)
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
                if found[name] == nil { found[name] = path }
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

    private func entries(_ directory: String) -> [String] {
        ((try? directoryEntries(directory)) ?? []).sorted()
    }
}

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

/// The watches and the scan that reads the directories.
final class DiscoveryWatch {
    let inotify: Inotify
    let libvirt: Bool
    let directories: [String]
    var watched: Set<String> = []

    init(libvirt: Bool, directories: [String]) throws(SystemError) {
        inotify = try Inotify()
        self.libvirt = libvirt
        self.directories = directories
    }

    /// Lists every watched directory (adding watches as directories appear)
    /// and returns the guests found: name → socket path. Duplicates: first wins.
    func scan(log: (String) -> Void) -> [String: String] {
        var found: [String: String] = [:]
        if libvirt, watch(DiscoveryScan.libvirtChannels, log: log) {
            for domain in entries(DiscoveryScan.libvirtChannels) {
                let dir = DiscoveryScan.libvirtChannels + "/" + domain
                guard let name = DiscoveryScan.libvirtName(domain), (try? FileStatus.of(dir))?.kind == .directory else { continue }
                _ = watch(dir, log: log)
                let socket = dir + "/" + DiscoveryScan.libvirtSocket
                if (try? FileStatus.of(socket))?.kind == .socket, found[name] == nil { found[name] = socket }
            }
        }
        for directory in directories where watch(directory, log: log) {
            for entry in entries(directory) {
                let path = directory + "/" + entry
                guard let name = DiscoveryScan.socketName(entry), (try? FileStatus.of(path))?.kind == .socket else { continue }
                if found[name] == nil { found[name] = path }
            }
        }
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
            _ = try inotify.watch(directory)
            if watched.insert(directory).inserted { log("discovery: watching \(directory)") }
            return true
        } catch {
            if watched.remove(directory) != nil { log("discovery: \(directory) no longer watched: \(error.cause)") }
            return false
        }
    }

    private func entries(_ directory: String) -> [String] {
        ((try? directoryEntries(directory)) ?? []).sorted()
    }
}

// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonPolicy
import BalloonSystem

// SIGHUP: re-read the files, then add, change and remove guests without
// touching the others; discovery's watches and scans.

extension HostAgent {
    /// Re-reads the configuration; a bad file is logged and changes nothing.
    func reload() {
        notifier.reloading()
        defer {
            notifier.ready()
            updateStatus()
        }
        let new: HostdSetup
        do { new = try HostdLoader.load(path: configPath, required: configRequired) } catch {
            log("reload failed, configuration unchanged: \(error)")
            return
        }
        let old = setup
        if new.config.control != old.config.control {
            log("Control= changed to \(new.config.control): takes effect at the next start (still \(old.config.control))")
        }
        if new.config.controlGroup != old.config.controlGroup {
            log("ControlGroup= changed: takes effect at the next start (still \(old.config.controlGroup ?? "none"))")
        }
        if new.config.metricsListen != old.config.metricsListen {
            log("[Metrics] Listen= changed to \(new.config.metricsListen): takes effect at the next start (still \(old.config.metricsListen))")
        }
        setup = new
        setup.config.control = old.config.control
        setup.config.controlGroup = old.config.controlGroup
        setup.config.metricsListen = old.config.metricsListen
        policyOverrides = [:]
        let newSettings = Self.settings(new.config, machine: sampler.machine(at: loop.clock()))
        if policySettings != newSettings {
            policySettings = newSettings
            policy = makePolicy(newSettings)
            armPolicyTimer()
            log("policy \(policy.mode.rawValue) every \(HostFormat.seconds(policy.interval.seconds))")
        }
        // Guests whose file went, or changed (then added again below), and
        // every guest when the stats subscription changed.
        let statsChanged = new.config.statsInterval != old.config.statsInterval
        for name in old.guests.keys.sorted() where new.guests[name] != old.guests[name] || statsChanged {
            removeGuest(name, reason: new.guests[name] == nil ? "its file was removed" : "its file changed")
        }
        for name in new.guests.keys.sorted() where loop.peersByName[name] == nil || new.guests[name] != old.guests[name] || statsChanged {
            // A discovered guest of the same name gives way to the file.
            if let peer = loop.peersByName[name] { loop.removePeer(peer, reason: "configured by a file now") }
            addGuest(name)
        }
        for peer in loop.peers.values { refreshLimits(peer) }
        if new.config.libvirt != old.config.libvirt || new.config.directories != old.config.directories
            || new.config.libvirtMemory != old.config.libvirtMemory || new.config.libvirtRamMap != old.config.libvirtRamMap || statsChanged
        {
            startDiscovery()
        } else {
            rescan()
        }
        log("reloaded: \(setup.guests.count) configured guests, \(discovered.count) discovered")
    }

    /// (Re)creates the watches and scans.
    func startDiscovery() {
        if let discovery { loop.epoll.remove(discovery.inotify.descriptor) }
        discovery = nil
        let config = setup.config
        if config.libvirt || !config.directories.isEmpty {
            do {
                let watch = try DiscoveryWatch(
                    libvirt: config.libvirt, directories: config.directories, libvirtMemory: config.libvirtMemory?.domainsDirectory)
                try loop.epoll.add(watch.inotify.descriptor, events: .readable, token: ServeLoop.token(.discovery))
                discovery = watch
            } catch {
                log("discovery disabled: \(error)")
            }
        }
        rescan()
    }

    func discoveryEvent() {
        guard let discovery, discovery.drain() else { return }
        rescan()
    }

    /// Adds and removes discovered guests to match the watched directories.
    func rescan() {
        var found = discovery?.scan(log: log) ?? [:]
        for name in found.keys where setup.guests[name] != nil || !HostdLoader.isValidName(name) { found[name] = nil }
        let (add, remove) = DiscoveryScan.diff(current: discovered, found: found)
        for name in remove {
            // Same socket: the RAM file appeared (or changed) after the socket; added again below.
            let reason = found[name]?.socket == discovered[name]?.socket ? "its RAM file changed" : "its socket is gone or moved"
            discovered[name] = nil
            // Not a guest a file now configures under the same name.
            if loop.peersByName[name]?.agent.source == "discovered" { removeGuest(name, reason: reason) }
        }
        for (name, guest) in add.sorted(by: { $0.key < $1.key }) {
            discovered[name] = guest
            addGuest(name, discovered: guest)
        }
    }
}

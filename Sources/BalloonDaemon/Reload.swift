// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonController
import Logging

extension Daemon {
    /// SIGHUP: reads the configuration again and applies what changed. A
    /// configuration that does not load, or a new channel that does not open,
    /// leaves everything as it was. A channel that cannot be had back either
    /// stops the daemon (no host could reach it; the supervisor restarts it).
    func reload() {
        notifier.reloading()
        defer { notifier.ready() }
        let loaded: LoadedConfig
        do {
            loaded = try ConfigLoader.load(path: options.configPath, required: options.configRequired)
        } catch {
            logger.error("reload failed, keeping the previous configuration: \(error)")
            return
        }
        let old = config
        let newChannel = options.channelOverride ?? loaded.config.listen
        if newChannel != (options.channelOverride ?? old.listen) {
            let previous = link.label
            do {
                try link.switchChannel(to: newChannel)
            } catch .open(_, let error) {
                logger.error("reload: cannot open \(newChannel), keeping \(previous) and the previous configuration: \(error)")
                return
            } catch {
                logger.critical("reload: \(error); stopping so the supervisor can start balloond afresh")
                stop(failure: .channel(error))
                return
            }
        }
        config = loaded.config
        configSources = loaded.sources
        logger.logLevel = Logger.Level(config.logLevel)
        link.allowedCIDs = config.vsockAllowedCIDs
        chunks.hugePageAdvice = Self.hugePageAdvice(config.transparentHugePages)
        chunks.useHolders = config.holderProcesses
        controller.policy = Self.policy(config)
        controller.policy.triggers = pressure.shapes  // unless the triggers change below
        pressure.reclaimSignals = config.reclaimSignals
        frames.rescanInterval = config.frameRescanInterval
        freeMemory.reload(config)
        if config.lightTrigger != old.lightTrigger || config.heavyTrigger != old.heavyTrigger || config.severeTrigger != old.severeTrigger {
            pressure.closeTriggers()
            pressure.openTriggers(config)
        }
        if config.holderProcesses { pressure.protectFromOOMKiller() }
        let limits = Self.limits(config, memoryTotal: memoryTotal)
        if limits != controller.limits {
            controller.updateLimits(limits)
            needsStep = true
        }
        if config.statsInterval != old.statsInterval {
            do { try setStatsInterval(config.statsInterval) } catch {
                logger.error("reload: cannot set the stats interval, STATS events keep the previous one: \(error)")
            }
        }
        logger.info("configuration reloaded", metadata: ["sources": "\(configSources.joined(separator: ", "))"])
    }
}

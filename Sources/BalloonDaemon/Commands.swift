// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonProtocol
import BalloonSystem
import Logging

/// The host's requests: one typed `Command` each, answered in order.
extension Daemon {
    func handle(_ item: LineFramer.Item) {
        switch item {
        case .resync: break
        case let .tooLong(limit):
            reply(Response(id: nil, result: .failure(ProtocolError(.lineTooLong, "line longer than \(limit) bytes discarded"))))
        case let .line(bytes):
            let message: Message
            do {
                message = try Message.decode(bytes)
            } catch {
                reply(Response(id: nil, result: .failure(error)))
                return
            }
            guard case let .request(request) = message else {
                reply(Response(id: nil, result: .failure(ProtocolError(.malformedMessage, "the guest accepts only requests (\"execute\")"))))
                return
            }
            let result: Result<JSON, ProtocolError>
            var synced = false
            do {
                let command = try Command(request)
                result = .success(try execute(command))
                if case .sync = command { synced = true }
            } catch {
                result = .failure(error)
            }
            // Events queued before the request was handled go first.
            publishEvents()
            if synced { link.send([LineFramer.resyncByte]) }
            reply(Response(id: request.id, result: result))
            if let work = afterReply {
                afterReply = nil
                work()
                publishEvents()
            }
        }
    }

    /// While a chunk locks, the host's channel: what it sends is kept for
    /// after the lock (`HostLink.readDuringLock`), and if the last
    /// `set-target` read is below what the balloon will hold once the lock is
    /// done, the lock ends and its memory goes back (`ChunkStack.lockWatch`);
    /// a lower target the host raised again in the same read does not. A TCG guest locks 64 MiB
    /// in most of a second: `auto`'s hold of an inflating neighbour during
    /// another guest's burst (docs/policy.md) took effect only after it.
    func lockWatch(holdingWhenDone holding: UInt64) -> LockWatch? {
        guard let descriptor = link.lockDescriptor else { return nil }
        return LockWatch(descriptor: descriptor) { [unowned self] in
            let (items, more) = link.readDuringLock()
            if let target = items.compactMap(Self.requestedTarget).last, target < holding {
                logger.info("the host lowered the target during a chunk lock: the lock ends", metadata: [
                    "target": "\(HumanBytes.format(target))", "holding-when-done": "\(HumanBytes.format(holding))",
                ])
                return .giveWay
            }
            return more ? .wait : .stopWatching
        }
    }

    /// The target a host line asks for, if it is a well-formed `set-target`.
    static func requestedTarget(_ item: LineFramer.Item) -> UInt64? {
        guard case let .line(bytes) = item, case let .request(request)? = try? Message.decode(bytes),
              case let .setTarget(target)? = try? Command(request) else { return nil }
        return target
    }

    private func reply(_ response: Response) {
        link.send(Message.response(response).encoded())
    }

    private func execute(_ command: Command) throws(ProtocolError) -> JSON {
        switch command {
        case let .sync(id):
            return id
        case .info:
            return infoReply().json
        case let .setTarget(requested):
            let target: UInt64
            do {
                target = try controller.setTarget(requested)
            } catch {
                throw ProtocolError(.invalidParameter, "\(command.name.rawValue): \(error)")
            }
            needsStep = true
            logger.info("new target", metadata: [
                "target": "\(HumanBytes.format(target))", "actual": "\(HumanBytes.format(controller.actual))",
            ])
            return SetTargetReply(target: target, effectiveTarget: controller.effectiveTarget, actual: controller.actual).json
        case .query:
            return queryReply().json
        case .stats:
            return statsReply().json
        case let .setStatsInterval(interval):
            do { try setStatsInterval(interval) } catch {
                throw ProtocolError(.genericError, "\(command.name.rawValue): \(error)")
            }
            return StatsIntervalReply(interval: interval).json
        case let .setFrameReporting(enabled):
            var held = 0
            if enabled {
                frames.reportingStarted()  // First: pages moved while the frames are read count.
                do { held = try chunks.enableFrameReporting() } catch {
                    throw ProtocolError(.genericError, "\(command.name.rawValue): \(error)")
                }
                afterReply = { [unowned self] in self.chunks.reportHeldFrames() }
                logger.info("frame reporting on", metadata: ["frames": "\(held)"])
            } else {
                freeMemory.disable(because: "frame reporting was switched off")
                frames.stopReporting(because: "the host asked")
            }
            // Holders keep unacknowledged memory for the grace time after
            // the daemon dies; memory held in the daemon itself cannot.
            let grace = chunks.useHolders ? chunks.reporter.grace : .zero
            return FrameReportingReply(enabled: enabled, pageSize: controller.limits.pageSize, frames: UInt64(held),
                                       instance: instance, grace: grace).json
        case let .framesAck(seq, named):
            if let named, named != instance {
                throw ProtocolError(.staleInstance, "\(command.name.rawValue): instance \(named) is an earlier lifetime of this daemon (now \(instance)): nothing acknowledged")
            }
            chunks.acknowledge(seq)
            return FramesAckReply(acked: seq).json
        case .rescanFrames:
            guard chunks.reportingFrames else {
                throw ProtocolError(.genericError, "\(command.name.rawValue): frame reporting is off (\(Command.Name.setFrameReporting.rawValue) first)")
            }
            return RescanFramesReply(moved: UInt64(chunks.rescanFrames())).json
        case let .setFreeMemoryReporting(enabled):
            return try setFreeMemoryReporting(enabled).json
        case .serveStatus:
            // Decoded for the guest scope, this never comes; answered as unknown.
            throw Command.notFound(command.name.rawValue)
        }
    }

    func infoReply() -> InfoReply {
        let limits = controller.limits
        let advice: InfoReply.HugePageAdvice = switch chunks.hugePageAdvice {
        case .advise: .advise
        case .forbid: .forbid
        case .leave: .leave
        }
        return InfoReply(
            version: balloondVersion, features: InfoReply.v1Features + (config.freeMemoryAllow ? [InfoReply.freeMemoryFeature] : []),
            pageSize: limits.pageSize, memoryTotal: limits.memoryTotal,
            maxBalloon: limits.maxBalloon, memAvailableFloor: limits.availableFloor, chunkSize: limits.chunkSize,
            transparentHugePages: chunks.hugePageAdvice != .forbid && systemHugePageMode().map { $0 != "never" } == true,
            hugePageAdvice: advice, channel: link.endpoint?.label ?? "", pressureTriggers: pressure.triggerInfo,
            holderProcesses: config.holderProcesses, protectedFromOOMKiller: pressure.protectedFromOOM)
    }

    func queryReply() -> QueryReply {
        let limits = controller.limits
        let now = clock.now
        let last = controller.lastDeflate.map { d in
            QueryReply.Pressure.LastDeflate(bytes: d.bytes, reason: d.reason.reason, ago: now - d.at, timing: lastDeflateTiming)
        }
        let pressure = QueryReply.Pressure(
            state: controller.inPressureBackoff ? .backoff : .calm, ceiling: controller.hostCeiling,
            quietFor: controller.quietUntil.map { $0 > now ? $0 - now : .zero },
            deflatedTotal: controller.pressureDeflatedBytes, lastDeflate: last,
            regrowthReclaimedTotal: freeMemory.regrowthReclaimedTotal)
        return QueryReply(
            target: controller.target, effectiveTarget: controller.effectiveTarget, actual: controller.actual,
            state: controller.state,
            limits: .init(memoryTotal: limits.memoryTotal, maxBalloon: limits.maxBalloon, memAvailableFloor: limits.availableFloor, chunkSize: limits.chunkSize),
            reason: controller.reason, pressure: pressure,
            freeMemory: QueryReply.FreeMemory(
                allowed: config.freeMemoryAllow, enabled: freeMemory.enabled,
                cushion: controller.freeMemory?.policy.cushion ?? freeMemory.cushion, target: controller.freeMemoryTarget,
                held: controller.freeMemoryHeld, coldCache: freeMemory.coldCacheInfo))
    }

    /// The `stats` reply and `STATS` event: the kernel's counters unchanged,
    /// and the free memory the mode holds and the floor beside the balloon's size.
    func statsReply() -> StatsReply {
        sampler.statsReply(
            target: controller.target, actual: controller.actual, freeMemoryHeld: controller.freeMemoryHeld,
            memAvailableFloor: controller.limits.availableFloor)
    }

    private func setFreeMemoryReporting(_ enabled: Bool) throws(ProtocolError) -> FreeMemoryReportingReply {
        let name = Command.Name.setFreeMemoryReporting.rawValue
        guard enabled else {
            freeMemory.disable(because: "the host asked")
            return FreeMemoryReportingReply(enabled: false, cushion: freeMemory.cushion, coldCache: false)
        }
        guard config.freeMemoryAllow else {
            throw ProtocolError(.genericError, "\(name): the guest's configuration forbids the free-memory mode ([FreeMemory] Allow=no)")
        }
        // Held free memory is only returned if the host frees its frames.
        guard chunks.reportingFrames else {
            throw ProtocolError(.genericError, "\(name): frame reporting is off (\(Command.Name.setFrameReporting.rawValue) first)")
        }
        let policy: FreeMemoryPolicy
        do { policy = try freeMemory.enable() } catch {
            throw ProtocolError(.genericError, "\(name): \(error)")
        }
        needsStep = true
        return FreeMemoryReportingReply(enabled: true, cushion: policy.cushion, coldCache: config.reclaimColdCache && freeMemory.coldCacheUnavailable == nil)
    }
}

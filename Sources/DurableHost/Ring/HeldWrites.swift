import CurlHTTP
import Foundation
import HTTPServing
import HashRing
import HostLink
import Logging
import Metrics
import ServerRuntime
import ServiceLifecycle
import ServiceMetrics
import SessionModel
import Synchronization

/// Hinted handoff (Dynamo, Cassandra) between the hosts of a ring on SQLite: while a
/// session's owner cannot be reached, its runner-up holds the session (a copy under
/// `copyID(id)`, each write also kept as a held write), and gives every write back, in order
/// and under its own idempotency key, when the owner returns. The protocol, what it
/// guarantees and what it does not: docs/ARCHITECTURE.md, "Hinted handoff".
final class HeldWrites: Sendable {
    static let copyPrefix = StorageKeys.heldCopyPrefix

    /// Where the copy of `id` held for its owner is stored: a prefix no session id can have.
    static func copyID(_ id: String) -> String { copyPrefix + id }
    static func isCopy(_ id: String) -> Bool { id.hasPrefix(copyPrefix) }
    static func sessionID(ofCopy copy: String) -> String {
        isCopy(copy) ? String(copy.dropFirst(copyPrefix.count)) : copy
    }

    /// A heartbeat older than this means the host was paused (or starved) long enough for
    /// workers to send its sessions elsewhere.
    static let pauseThreshold: Duration = .seconds(2)

    let node: String
    let ring: RingHolder
    let store: any LocalSessionStore
    /// How this host reaches the others.
    let hosts: HostClient
    let logger: Logger
    /// Our sessions with writes held elsewhere, by the member holding them.
    private let pending = Mutex<[String: String]>([:])
    private let pendingCount = Atomic<Int>(0)
    let clock: ServerClock
    private let started: ServerClock.Instant
    /// Nanoseconds since `started` of the last heartbeat.
    private let lastBeat = Atomic<Int64>(0)
    /// Asking the members what they held, once however many callers wait.
    private let recovering = SingleFlight<Void>()
    /// Owners that asked what this host holds for them (they are back), until a probe finds
    /// one unreachable again.
    private let returned = Mutex<Set<String>>([])
    private let merged = Metrics.Counter(label: "host_held_writes_merged_total")
    private let heldHere = Metrics.Counter(label: "host_held_writes_total")

    init(
        node: String, ring: RingHolder, store: any LocalSessionStore, client: CurlClient, token: String?, clock: ServerClock = .system,
        logger: Logger
    ) {
        self.clock = clock
        started = clock.now
        self.node = node
        self.ring = ring
        self.store = store
        hosts = HostClient(curl: client, token: token)
        self.logger = logger
    }

    // MARK: The owner's side

    /// What live objects use to merge held writes.
    var elsewhere: HeldElsewhere {
        HeldElsewhere(
            isPending: { [self] id in pendingCount.load(ordering: .relaxed) > 0 && pending.withLock { $0[id] != nil } },
            pull: { [self] id in try await pull(id) },
            acknowledge: { [self] id, seq in await acknowledge(id, through: seq) })
    }

    /// Records that `holder` holds writes for `ids`.
    func noteHeld(_ ids: [String], by holder: String) {
        guard !ids.isEmpty else { return }
        let count = pending.withLock { pending in
            for id in ids { pending[id] = holder }
            return pending.count
        }
        pendingCount.store(count, ordering: .relaxed)
        logger.notice("writes held elsewhere wait to be merged", metadata: ["holder": "\(holder)", "sessions": "\(ids.count)"])
    }

    private func forgetPending(_ id: String) {
        let count = pending.withLock { pending in
            pending[id] = nil
            return pending.count
        }
        pendingCount.store(count, ordering: .relaxed)
    }

    /// Sessions waiting for their held writes.
    var pendingIDs: [String] { pending.withLock { Array($0.keys) } }

    /// Asks every other member which of this host's sessions it holds writes for.
    func recover() async {
        let members = ring.otherMembers
        guard !members.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for member in members {
                group.addTask {
                    guard
                        let response = try? await self.hosts.send(
                            .heldFor(owner: self.node), to: member.address, timeout: .seconds(1), connectTimeout: .milliseconds(500)),
                        response.status == 200,
                        let held = try? JSONCoding.decoder.decode(HostAPI.HeldSessions.self, from: response.body)
                    else { return }
                    self.noteHeld(held.ids, by: member.name)
                }
            }
        }
        beat()
    }

    /// Whether the heartbeat stopped for a while: the process was paused (or starved) long
    /// enough for workers to send its sessions to their runners-up.
    var wasAway: Bool {
        let beat = Duration.nanoseconds(lastBeat.load(ordering: .relaxed))
        return clock.elapsed(since: started) - beat > Self.pauseThreshold
    }

    /// Called before serving a session, and by the heartbeat: if this host was away, first
    /// asks the members what they held meanwhile (once, however many callers wait).
    func ensureCurrent() async {
        guard wasAway else { return }
        try? await recovering.run {
            self.logger.warning("this host was not running for a while (paused?); asking the members what they held for it")
            await self.recover()
        }
    }

    /// The heartbeat: the courier beats every quarter second.
    func beat() {
        lastBeat.store(clock.elapsed(since: started).nanosecondsValue, ordering: .relaxed)
    }

    private func holder(of id: String) -> Membership.Member? {
        guard let name = pending.withLock({ $0[id] }) else { return nil }
        return ring.otherMembers.first { $0.name == name }
    }

    /// Takes the writes held for `id` from their holder (which stops taking more).
    private func pull(_ id: String) async throws -> [HostAPI.HeldWrite] {
        guard let holder = holder(of: id) else {
            forgetPending(id)
            return []
        }
        let body = (try? JSONCoding.encoder.encode(["to": node])) ?? Data()
        do {
            let response = try await hosts.send(.heldHandback(id), to: holder.address, body: body, timeout: .seconds(5), connectTimeout: .seconds(1))
            if response.status == 404 {
                forgetPending(id)
                return []
            }
            guard response.status == 200, let handback = try? JSONCoding.decoder.decode(HostAPI.Handback.self, from: response.body) else {
                throw StoreError("the holder answered HTTP \(response.status)")
            }
            return handback.writes
        } catch {
            // Served meanwhile from what is here; the holder tells us again once it can.
            forgetPending(id)
            logger.warning(
                "could not take back writes held for a session; serving it meanwhile",
                metadata: ["session": "\(id)", "holder": "\(holder.name)", "error": "\(error)"])
            throw error
        }
    }

    /// The held writes of `id` up to `seq` are durable here: the holder may forget them.
    private func acknowledge(_ id: String, through seq: Int64) async {
        let holder = holder(of: id)
        forgetPending(id)
        guard let holder else { return }
        merged.increment()
        _ = try? await hosts.send(.heldDone(id, through: seq), to: holder.address, timeout: .seconds(5), connectTimeout: .seconds(1))
        logger.notice("writes held elsewhere were merged", metadata: ["session": "\(id)", "holder": "\(holder.name)"])
    }

    // MARK: The holder's side

    /// Refuses a hinted request this host is not the holder for under its ring.
    func checkHolding(_ id: String, for owner: String) throws(APIError) {
        let current = ring.current
        guard let actualOwner = current.owner(of: id), actualOwner.name == owner, owner != node else {
            throw APIError(
                .hintRefused,
                "'\(owner)' does not own '\(id)' in this host's ring (version \(current.version)): send to \(current.owner(of: id)?.name ?? "its owner")")
        }
        guard current.runnerUp(of: id)?.name == node else {
            throw APIError(.hintRefused, "this host does not hold writes for '\(id)' in ring version \(current.version)")
        }
    }

    /// Whether the copy of `id` needs a (newer) seed before it serves: none yet, or one older
    /// than what the caller knows while it holds no write.
    func needsSeed(_ id: String, callerVersion: Double) async throws(APIError) -> Bool {
        let info: HeldInfo?
        do {
            info = try await store.heldInfo(id)
        } catch {
            throw APIError(.storageUnavailable, "could not read the held copy of '\(id)'; retry")
        }
        guard let info else { return true }
        return info.writes == 0 && callerVersion > info.seedVersion
    }

    /// Whether `owner`, which this host would start holding a session for, answers again.
    ///
    /// A worker that found the owner unreachable keeps sending its sessions here until its
    /// next probe, so a session can be held for an owner that has already come back and asked
    /// what is held for it. Such an owner would not know to merge the session before serving
    /// it; so once an owner has asked (`GET /hints?owner=`), a new copy is started only after
    /// a probe finds it unreachable again, and otherwise the call is refused back to it. A dead
    /// owner refuses the probe's connection at once; a paused one costs a second, once.
    func ownerAnswers(_ owner: String) async -> Bool {
        guard returned.withLock({ $0.contains(owner) }), let member = ring.otherMembers.first(where: { $0.name == owner }) else {
            return false
        }
        if case .success = await hosts.ring(at: member.address, timeout: .seconds(1)) { return true }
        returned.withLock { _ = $0.remove(owner) }
        return false
    }

    /// Counts a write held for an owner.
    func countHeld() {
        heldHere.increment()
    }

    /// `GET /hints?owner=NODE`.
    func list(for owner: String) async throws(APIError) -> HostAPI.HeldSessions {
        returned.withLock { _ = $0.insert(owner) }
        do {
            return HostAPI.HeldSessions(holder: node, ids: try await store.heldSessions(owner: owner).map(\.id))
        } catch {
            throw APIError(.storageUnavailable, "could not list the held sessions; retry")
        }
    }

    /// Tells each owner that holds nothing of ours yet, and answers again, what is held for it.
    func notifyOwners() async {
        guard let held = try? await store.heldSessions(owner: nil), !held.isEmpty else { return }
        let byOwner = Dictionary(grouping: held, by: \.owner)
        for (owner, sessions) in byOwner {
            guard let member = ring.otherMembers.first(where: { $0.name == owner }) else { continue }
            let body = (try? JSONCoding.encoder.encode(HostAPI.HeldSessions(holder: node, ids: sessions.map(\.id)))) ?? Data()
            _ = try? await hosts.send(.heldNotice, to: member.address, body: body, timeout: .seconds(1), connectTimeout: .milliseconds(500))
        }
    }
}

/// The heartbeat of `HeldWrites`, the owner's background merge of held writes, and the
/// holder's notices to owners that answer again.
struct HeldWritesCourier: Service {
    let held: HeldWrites
    let directory: SessionDirectory
    let logger: Logger
    var beatInterval: Duration = .milliseconds(250)
    var passInterval: Duration = .seconds(1)

    func run() async throws {
        var lastPass = held.clock.now
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // After a pause the heartbeat stays stale until the members were asked, so that
            // requests arriving meanwhile wait for the answer too.
            if held.wasAway { await held.ensureCurrent() } else { held.beat() }
            if held.clock.elapsed(since: lastPass) >= passInterval {
                lastPass = held.clock.now
                await held.notifyOwners()
                // Sessions whose writes wait elsewhere are merged even if nobody asks for them.
                for id in held.pendingIDs.prefix(100) {
                    _ = try? await directory.withObject(id) { object throws(APIError) in try await object.read() }
                }
            }
            try? await cancelWhenGracefulShutdown { try await held.clock.sleep(for: beatInterval) }
        }
    }
}

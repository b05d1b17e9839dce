import CurlHTTP
import Foundation
import HashRing
import HostLink
import Logging
import Metrics
import ServiceLifecycle
import ServiceMetrics
import SessionModel

/// Moving sessions between hosts when the ring changes, without losing or forking one: the
/// old owner stops at once (421), the new owner pulls each id on first touch through the
/// old owner's live object (frozen, durable, "moved" recorded), a background pass moves the
/// rest, and the change settles once nothing is pending. The protocol and its guarantees:
/// docs/ARCHITECTURE.md, "Many hosts: the ring and its changes".
final class Handoff: Sendable {
    let ring: RingHolder
    let store: any LocalSessionStore
    /// How this host reaches the others.
    let hosts: HostClient
    let stats: StorageStatus
    let logger: Logger
    private let pulled = Metrics.Counter(label: "host_handoff_pulled_total")
    private let purged = Metrics.Counter(label: "host_handoff_purged_total")

    init(ring: RingHolder, store: any LocalSessionStore, client: CurlClient, token: String?, stats: StorageStatus, logger: Logger) {
        self.ring = ring
        self.store = store
        hosts = HostClient(curl: client, token: token)
        self.stats = stats
        self.logger = logger
    }

    /// Loads a session for its live object, first taking it over from its previous owner
    /// when a ring change moved it here and it has not been taken yet.
    func load(_ id: String, idempotencySince: Double) async throws -> StoredSession? {
        let stored = try await store.load(id, idempotencySince: idempotencySince)
        guard let previous = ring.previousOwner(of: id), stored?.adopted != true else { return stored }
        let payload = try await pull(id, from: previous)
        let session = StoredSession(record: payload.record, nextSeq: payload.nextSeq, idempotency: payload.idempotency)
        let hadRow = stored?.record != nil
        let created = try await store.adopt(id, session, from: previous.name, version: ring.version)
        if created || (hadRow && payload.record == nil) {
            stats.recordSuccess(sessionsDelta: created ? 1 : -1)
        }
        pulled.increment()
        logger.debug("took a session over", metadata: ["session": "\(id)", "from": "\(previous.name)"])
        return try await store.load(id, idempotencySince: idempotencySince)
    }

    /// `POST /handoff/{id}` on the previous owner.
    private func pull(_ id: String, from member: Membership.Member) async throws(APIError) -> HandoffPayload {
        let body = (try? JSONCoding.encoder.encode(HandoffRequest(version: ring.version, to: ring.node))) ?? Data()
        let response: HTTPResponse
        do {
            response = try await hosts.send(.handoff(id), to: member.address, body: body, timeout: .seconds(5))
        } catch {
            throw APIError(.ringChanging, "session '\(id)' is moving here from \(member.name), which cannot be reached (\(error)); retry")
        }
        guard response.status == 200, let payload = try? JSONCoding.decoder.decode(HandoffPayload.self, from: response.body) else {
            throw APIError(.ringChanging, "session '\(id)' is moving here from \(member.name), which answered HTTP \(response.status); retry")
        }
        return payload
    }

    // MARK: The background pass

    /// Offers every stored session this host no longer owns to its owner and deletes the
    /// frozen copies the owners have taken. Returns how many remain.
    func migrateOnce() async -> Int {
        var remaining = 0
        var cursor: String?
        while !Task.isCancelled {
            let page: [String]
            do {
                page = try await store.sessionIDs(after: cursor, limit: 500)
            } catch {
                logger.warning("ring migration could not list sessions", metadata: ["error": "\(error)"])
                return max(remaining, 1)
            }
            guard let last = page.last else { break }
            cursor = last
            for id in page where !ring.ownsNow(id) {
                if await offer(id) { continue }
                remaining += 1
            }
        }
        return remaining
    }

    /// Has the owner of `id` take it (`POST /handoff/{id}/adopt`), then deletes the copy here.
    private func offer(_ id: String) async -> Bool {
        guard let owner = ring.owner(of: id) else { return false }
        do {
            let response = try await hosts.send(.adopt(id), to: owner.address, timeout: .seconds(10))
            guard response.status == 200 else { return false }
            if try await store.purgeMoved(id) {
                stats.recordSuccess(sessionsDelta: -1)
                purged.increment()
            }
            return true
        } catch {
            return false
        }
    }

    /// Whether every other member of both rings serves the current version (or a newer one)
    /// with nothing left to hand over.
    func othersDone() async -> Bool {
        let version = ring.version
        for member in ring.otherMembers {
            guard case .success(let info) = await hosts.ring(at: member.address) else { return false }
            if info.version < version { return false }
            if info.version == version && info.pending != 0 { return false }
        }
        return true
    }
}

/// `POST /handoff/{id}`: the asking host and the ring version it asks under.
struct HandoffRequest: Codable, Sendable {
    var version: Int
    var to: String
}

/// Runs the background pass while a change migrates, and settles it once every member is done.
struct RingMigrator: Service {
    let handoff: Handoff
    let logger: Logger
    /// Pause between passes.
    var interval: Duration = .milliseconds(500)

    func run() async throws {
        let ring = handoff.ring
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if !ring.isSettled || ring.pending != 0 {
                let pending = await handoff.migrateOnce()
                ring.setPending(pending)
                if !ring.isSettled, pending == 0, await handoff.othersDone() {
                    ring.settle()
                    do {
                        try await handoff.store.saveRingState(try JSONCoding.encoder.encode(ring.persisted))
                        logger.notice("ring change settled", metadata: ["version": "\(ring.version)"])
                    } catch {
                        logger.warning("could not save the settled ring; will settle again after a restart", metadata: ["error": "\(error)"])
                    }
                }
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

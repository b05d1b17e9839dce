import CurlHTTP
import Foundation
import HTTPServing
import HashRing
import Logging
import Prometheus
import ServiceMetrics
import SessionModel
import ServiceLifecycle
import Settings

/// A durable host, assembled: storage, the group committer, the live objects, upkeep and
/// the HTTP server, as services for one `ServiceGroup`.
///
/// The group shuts services down in reverse order: the HTTP server first (no new requests,
/// in-flight ones finish), then upkeep, then the committer, which commits what is queued
/// and closes storage.
public struct DurableHostServer: Sendable {
    public static let version = "0.1.0"

    public let configuration: HostConfiguration
    public let services: [any Service]
    let state: HostState

    /// Opens storage and builds the services; `onListening` is told the bound address.
    public init(
        configuration: HostConfiguration,
        logger: Logger,
        registry: PrometheusCollectorRegistry? = nil,
        onListening: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws {
        self.configuration = configuration
        let store = try SQLiteSessionStore(directory: configuration.dataDirectory, synchronous: configuration.synchronous)
        let stats = StorageStatus(sessions: try await store.sessionCount())
        let committer = GroupCommitter(store: store, maxBatch: configuration.maxBatch, stats: stats, logger: logger)
        let peers = CurlClient(configuration: .init(userAgent: "durable-host/\(Self.version)"))
        let stored = try await store.loadRingState().flatMap { try? JSONCoding.decoder.decode(RingState.Persisted.self, from: $0) }
        var (persisted, note) = RingState.startingState(configured: configuration.membership, stored: stored)
        if stored == nil, configuration.membership.members.count > 1 {
            let answers = await Self.rings(of: configuration.membership, except: configuration.node, token: configuration.token, client: peers)
            if let previous = RingState.discoverPrevious(of: configuration.membership, answers: answers) {
                persisted.previous = previous
                note = "joining ring version \(configuration.membership.version); sessions move here from ring version \(previous.version)"
            }
        }
        if let note { logger.notice("\(note)") }
        // Written only when it changed: a host whose disk is full must still start and serve reads.
        if persisted != stored { try await store.saveRingState(try JSONCoding.encoder.encode(persisted)) }
        let ring = RingState(node: configuration.node, persisted: persisted)
        let handoff = Handoff(ring: ring, store: store, client: peers, token: configuration.token, stats: stats, logger: logger)
        let held = HeldWrites(node: configuration.node, ring: ring, store: store, client: peers, token: configuration.token, logger: logger)
        let retention = configuration.idempotencyRetention
        let context = ObjectContext(
            committer: committer, store: store,
            load: { id, since in
                // A held copy is this host's own data, whoever owns the session.
                HeldWrites.isCopy(id) ? try await store.load(id, idempotencySince: since) : try await handoff.load(id, idempotencySince: since)
            },
            limits: configuration.limits, idempotencyRetention: Double(retention.components.seconds), maxKeysPerSession: 1_000,
            now: { Date().timeIntervalSince1970 }, ownsNow: { ring.ownsNow($0) }, heldElsewhere: held.elsewhere)
        let directory = SessionDirectory(
            context: context, maxLive: configuration.maxLiveObjects, idleTimeout: configuration.idleTimeout)
        state = HostState(
            node: configuration.node, directory: directory, limits: configuration.limits,
            metrics: RouteMetrics(registry: registry, prefix: "host"), storage: stats, storePath: store.path,
            token: configuration.token, ring: ring, store: store, peers: peers, held: held, logger: logger)
        let upkeep = HostUpkeep(directory: directory, store: store, retention: retention, logger: logger)
        let application = HTTPService.make(
            responder: HostResponder(host: state), host: configuration.listen.host, port: configuration.listen.port,
            serverName: "durable-host/\(Self.version)", readTimeout: configuration.requestReadTimeout, logger: logger,
            onListening: onListening)
        let migrator = RingMigrator(handoff: handoff, logger: logger)
        // Before serving anything: what did the other members hold for us while we were away?
        await held.recover()
        let courier = HeldWritesCourier(held: held, directory: directory, logger: logger)
        services = [CurlClientService(client: peers), committer, upkeep, migrator, courier, application]
    }
}

extension DurableHostServer {
    /// What the other members answer to `GET /ring` (those that answer).
    static func rings(of membership: Membership, except node: String, token: String?, client: CurlClient) async -> [RingInfo] {
        var answers: [RingInfo] = []
        for member in membership.members where member.name != node {
            if case .success(let info) = await client.ring(at: member.address, token: token) { answers.append(info) }
        }
        return answers
    }
}

/// Periodic upkeep: evicts idle objects and forgets expired idempotency keys.
struct HostUpkeep: Service {
    let directory: SessionDirectory
    let store: any SessionStore
    let retention: Duration
    let logger: Logger

    func run() async throws {
        var lastPrune = ContinuousClock.now - .seconds(3600)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            directory.sweep()
            if ContinuousClock.now - lastPrune > .seconds(600) {
                lastPrune = .now
                let cutoff = Date().timeIntervalSince1970 - Double(retention.components.seconds)
                do {
                    let pruned = try await store.pruneIdempotency(before: cutoff)
                    if pruned > 0 { logger.debug("forgot expired idempotency keys", metadata: ["count": "\(pruned)"]) }
                } catch {
                    logger.warning("could not prune idempotency keys", metadata: ["error": "\(error)"])
                }
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }
}

import CurlHTTP
import Foundation
import HTTPServing
import HashRing
import HostLink
import Logging
import PostgresNIO
import Prometheus
import ServerRuntime
import ServiceLifecycle
import ServiceMetrics
import SessionModel
import Settings
import Synchronization

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
    let state: HostDependencies

    /// Opens storage and builds the services; `onListening` is told the bound address.
    /// `commitsThrough` is what the group committer commits through: the store itself, unless
    /// a test holds commits back (the test-only `durable-host-testing`).
    public init(
        configuration: HostConfiguration,
        logger: Logger,
        registry: PrometheusCollectorRegistry? = nil,
        clock: ServerClock = .system,
        commitsThrough: @Sendable (any SessionStore) -> any SessionStore = { $0 },
        onListening: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws {
        self.configuration = configuration
        let peers = CurlClient(configuration: .init(userAgent: "durable-host/\(Self.version)"))
        let retention = configuration.idempotencyRetention
        let bound = BoundAddress(configured: configuration.advertise)
        let listening: @Sendable (String) -> Void = { address in
            bound.set(address)
            onListening(address)
        }
        let parts: StorageParts
        switch configuration.storage {
        case .sqlite: parts = try await Self.sqliteParts(configuration, peers: peers, clock: clock, logger: logger)
        case .postgres: parts = Self.postgresParts(configuration, address: bound, clock: clock, logger: logger)
        }
        let ring = parts.ring
        let membership = parts.membership
        let forgetAll = RingChangeHandler()
        let committer = GroupCommitter(
            store: commitsThrough(parts.store), maxBatch: configuration.maxBatch, concurrency: configuration.commitsInFlight, stats: parts.stats,
            settleDoubt: { await membership?.fenceOffCommitsInFlight() },
            onDoubtResolved: { forgetAll.changed(0) }, clock: clock, logger: logger)
        let now = clock.wall
        let context = ObjectContext(
            committer: committer, store: parts.store, load: parts.load,
            limits: configuration.limits, retention: configuration.retention.secondsValue,
            idempotencyRetention: Double(retention.components.seconds), maxKeysPerSession: 1_000,
            now: now, ownsNow: { ring.ownsNow($0) }, heldElsewhere: parts.held?.elsewhere,
            ringVersion: { membership?.ringVersion ?? 0 })
        let directory = SessionDirectory(
            context: context, maxLive: configuration.maxLiveObjects, idleTimeout: configuration.idleTimeout, clock: clock)
        // A host's own storage holds only what is this host's to delete; a shared one, every host's.
        let ownsAllItStores = configuration.storage == .sqlite
        let lifetimes = Lifetimes(
            directory: directory, store: parts.store, isMine: { ownsAllItStores || ring.ownsNow($0) },
            retention: configuration.retention.secondsValue, now: now, stats: parts.stats)
        Lifetimes.declareMetrics()
        // On a shared database, a new ring version drops every live object: each reloads
        // under the new version, so none serves a session another host wrote meanwhile.
        parts.ringChanges.set { _ in directory.forgetAll() }
        forgetAll.set { _ in directory.forgetAll() }
        state = HostDependencies(
            node: configuration.node, directory: directory, limits: configuration.limits,
            metrics: RouteMetrics(registry: registry, prefix: "host"), storage: parts.stats, storePath: parts.store.description,
            token: configuration.token, ring: ring, store: parts.store, peers: peers, held: parts.held, membership: membership,
            lifetimes: lifetimes, clock: clock, logger: logger)
        let upkeep = HostUpkeep(
            directory: directory, store: parts.store, retention: retention, recount: configuration.storage == .postgres, stats: parts.stats,
            clock: clock, logger: logger)
        let application = HTTPService.make(
            responder: HostResponder(host: state), host: configuration.listen.host, port: configuration.listen.port,
            serverName: "durable-host/\(Self.version)", readTimeout: configuration.requestReadTimeout, logger: logger,
            onListening: listening)
        // The group stops its services last first: the membership leaves the ring (its sessions
        // move at once), the HTTP server drains, the committer commits what is queued, and the
        // database client and the libcurl thread stop last.
        var services: [any Service] = [CurlClientService(client: peers)]
        services += parts.early
        services += [committer, upkeep, ExpirySweeper(lifetimes: lifetimes, interval: configuration.expiryInterval, clock: clock, logger: logger)]
        if let held = parts.held {
            // Before serving anything: what did the other members hold for us while we were away?
            await held.recover()
            services.append(HeldWritesCourier(held: held, directory: directory, logger: logger))
        }
        services += parts.late(directory)
        services.append(application)
        if let membership { services.append(membership) }
        self.services = services
    }

    /// What differs between the backends.
    struct StorageParts {
        let store: any SessionStore
        let stats: StorageStatus
        let ring: RingHolder
        let load: @Sendable (_ id: String, _ idempotencySince: Double) async throws -> StoredSession?
        let held: HeldWrites?
        let membership: DatabaseMembership?
        let ringChanges: RingChangeHandler
        /// Services that must stop after the committer (the database client).
        let early: [any Service]
        /// Services that need the live objects (ring migration).
        let late: (SessionDirectory) -> [any Service]
    }

    /// SQLite: the ring of configured peers, ring changes by handoff, hinted handoff.
    private static func sqliteParts(
        _ configuration: HostConfiguration, peers: CurlClient, clock: ServerClock, logger: Logger
    ) async throws -> StorageParts {
        let store = try SQLiteSessionStore(
            directory: configuration.dataDirectory, synchronous: configuration.synchronous, codec: ContentCodec(threshold: configuration.compressThreshold))
        let stats = StorageStatus(sessions: try await store.sessionCount())
        let stored = try await store.loadRingState().flatMap { try? JSONCoding.decoder.decode(RingHolder.Persisted.self, from: $0) }
        var (persisted, note) = RingHolder.startingState(configured: configuration.membership, stored: stored)
        if stored == nil, configuration.membership.members.count > 1 {
            let answers = await Self.rings(of: configuration.membership, except: configuration.node, token: configuration.token, client: peers)
            if let previous = RingHolder.discoverPrevious(of: configuration.membership, answers: answers) {
                persisted.previous = previous
                note = "joining ring version \(configuration.membership.version); sessions move here from ring version \(previous.version)"
            }
        }
        if let note { logger.notice("\(note)") }
        // Written only when it changed: a host whose disk is full must still start and serve reads.
        if persisted != stored { try await store.saveRingState(try JSONCoding.encoder.encode(persisted)) }
        let ring = RingHolder(node: configuration.node, persisted: persisted)
        let handoff = Handoff(ring: ring, store: store, client: peers, token: configuration.token, stats: stats, logger: logger)
        let held = HeldWrites(
            node: configuration.node, ring: ring, store: store, client: peers, token: configuration.token, clock: clock, logger: logger)
        return StorageParts(
            store: store, stats: stats, ring: ring,
            load: { id, since in
                // A held copy is this host's own data, whoever owns the session.
                HeldWrites.isCopy(id) ? try await store.load(id, idempotencySince: since) : try await handoff.load(id, idempotencySince: since)
            },
            held: held, membership: nil, ringChanges: RingChangeHandler(), early: [],
            late: { _ in [RingMigrator(handoff: handoff, logger: logger)] })
    }

    /// PostgreSQL: one database for every host, membership by leases in it, fenced commits.
    private static func postgresParts(_ configuration: HostConfiguration, address: BoundAddress, clock: ServerClock, logger: Logger) -> StorageParts {
        let url = configuration.databaseURL!
        var clientLogger = logger
        clientLogger.logLevel = max(logger.logLevel, .warning)
        var clientConfiguration = url.clientConfiguration
        // A host paused inside a transaction holds the ring row's share lock; the server ends
        // such a transaction after a lease, so a ring change never waits longer than that.
        clientConfiguration.options.additionalStartupParameters.append(
            ("idle_in_transaction_session_timeout", "\(Int(configuration.leaseDuration.secondsValue * 1000))"))
        let client = PostgresClient(configuration: clientConfiguration, backgroundLogger: clientLogger)
        let fence = Fence(node: configuration.node)
        let store = PostgresSessionStore(
            client: client, fence: fence, timeout: configuration.storageTimeout, codec: ContentCodec(threshold: configuration.compressThreshold),
            description: "\(url)", clock: clock, logger: clientLogger)
        let ring = RingHolder(
            node: configuration.node,
            persisted: .init(current: Membership(version: 0, members: [], lease: configuration.leaseDuration.secondsValue), previous: nil))
        let changes = RingChangeHandler()
        let membership = DatabaseMembership(
            client: client, node: configuration.node, address: { address.value },
            timing: .init(leaseDuration: configuration.leaseDuration, renewInterval: configuration.leaseRenewInterval),
            fence: fence, ring: ring, clock: clock, logger: logger, onRingChange: { changes.changed($0) })
        return StorageParts(
            store: store, stats: StorageStatus(sessions: 0), ring: ring, load: { id, since in try await store.load(id, idempotencySince: since) },
            held: nil, membership: membership, ringChanges: changes, early: [client], late: { _ in [] })
    }
}

/// The address this host is reached at: the configured one, or the one it bound.
final class BoundAddress: Sendable {
    private let address: Mutex<String?>

    init(configured: ListenAddress?) {
        address = Mutex(configured.map { "\($0)" })
    }

    /// Records the bound address, unless one was configured.
    func set(_ bound: String) {
        address.withLock { if $0 == nil { $0 = bound } }
    }

    var value: String? { address.withLock { $0 } }
}

/// Who is told of a ring change: set once the live objects exist.
final class RingChangeHandler: Sendable {
    private let handler = Mutex<(@Sendable (Int64) -> Void)?>(nil)

    func set(_ body: @escaping @Sendable (Int64) -> Void) {
        handler.withLock { $0 = body }
    }

    func changed(_ version: Int64) {
        handler.withLock { $0 }?(version)
    }
}

extension DurableHostServer {
    /// What the other members answer to `GET /ring` (those that answer).
    static func rings(of membership: Membership, except node: String, token: String?, client: CurlClient) async -> [RingInfo] {
        var answers: [RingInfo] = []
        for member in membership.members where member.name != node {
            if case .success(let info) = await HostClient(curl: client, token: token).ring(at: member.address) { answers.append(info) }
        }
        return answers
    }
}

/// Periodic upkeep: evicts idle objects and forgets expired idempotency keys; on a shared
/// database, recounts the stored sessions (every host writes them).
struct HostUpkeep: Service {
    let directory: SessionDirectory
    let store: any SessionStore
    let retention: Duration
    let recount: Bool
    let stats: StorageStatus
    let clock: ServerClock
    let logger: Logger

    func run() async throws {
        let started = clock.now
        // The first pruning waits a minute: a host just started has better things to do.
        var nextPrune = Duration.seconds(60)
        var nextCount = Duration.zero
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let elapsed = clock.elapsed(since: started)
            directory.sweep()
            if recount, elapsed >= nextCount {
                nextCount = elapsed + .seconds(5)
                if let count = try? await store.sessionCount() { stats.reset(sessions: count) }
            }
            if elapsed >= nextPrune {
                nextPrune = elapsed + .seconds(600)
                let cutoff = clock.wallNow - Double(retention.components.seconds)
                do {
                    let pruned = try await store.pruneIdempotency(before: cutoff)
                    if pruned > 0 { logger.debug("forgot expired idempotency keys", metadata: ["count": "\(pruned)"]) }
                } catch {
                    logger.warning("could not prune idempotency keys", metadata: ["error": "\(error)"])
                }
            }
            try? await cancelWhenGracefulShutdown { try await clock.sleep(for: .seconds(1)) }
        }
    }
}

import CurlHTTP
import Foundation
import Hummingbird
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
        let retention = configuration.idempotencyRetention
        let context = ObjectContext(
            committer: committer, store: store, limits: configuration.limits,
            idempotencyRetention: Double(retention.components.seconds), maxKeysPerSession: 1_000,
            now: { Date().timeIntervalSince1970 })
        let directory = SessionDirectory(
            context: context, maxLive: configuration.maxLiveObjects, idleTimeout: configuration.idleTimeout)
        state = HostState(
            node: configuration.node, directory: directory, limits: configuration.limits,
            metrics: RouteMetrics(registry: registry, prefix: "host"), storage: stats, storePath: store.path,
            token: configuration.token, membership: configuration.membership,
            peers: CurlClient(configuration: .init(userAgent: "durable-host/\(Self.version)")))
        let upkeep = HostUpkeep(directory: directory, store: store, retention: retention, logger: logger)
        let application = Application(
            responder: HostResponder(host: state),
            server: .http1(configuration: .init(idleTimeout: .seconds(75))),
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.listen.host, port: configuration.listen.port),
                serverName: "durable-host/\(Self.version)"),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
                onListening(address)
            },
            logger: logger)
        services = [CurlClientService(client: state.peers), committer, upkeep, application]
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

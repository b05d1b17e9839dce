import Foundation
import ServiceMetrics
import SessionModel
import Settings

/// What every request of a host shares.
final class HostState: Sendable {
    let node: String
    let directory: SessionDirectory
    let limits: SessionLimits
    let metrics: RouteMetrics
    let storage: StorageStatus
    let storePath: String
    private let token: String?
    private let started = ContinuousClock.now

    init(
        node: String, directory: SessionDirectory, limits: SessionLimits, metrics: RouteMetrics,
        storage: StorageStatus, storePath: String, token: String?
    ) {
        self.node = node
        self.directory = directory
        self.limits = limits
        self.metrics = metrics
        self.storage = storage
        self.storePath = storePath
        self.token = token
    }

    /// Checks `Authorization: Bearer <token>` when a token is configured.
    func authorize(_ header: String?) throws(APIError) {
        guard let token else { return }
        guard let header, header.hasPrefix("Bearer "),
            constantTimeEqual(Array(header.utf8.dropFirst(7)), Array(token.utf8))
        else {
            throw APIError(.unauthorized, "missing or wrong bearer token (Authorization: Bearer <token>)")
        }
    }

    /// The `/health` answer.
    struct Health: Encodable {
        struct Storage: Encodable {
            var status: String
            var path: String
            var lastError: String?

            enum CodingKeys: String, CodingKey {
                case status, path
                case lastError = "last_error"
            }
        }

        var status: String
        var node: String
        var sessionsStored: Int
        var liveObjects: Int
        var storage: Storage
        var uptimeSeconds: Double
        var version: String

        enum CodingKeys: String, CodingKey {
            case status, node, storage, version
            case sessionsStored = "sessions_stored"
            case liveObjects = "live_objects"
            case uptimeSeconds = "uptime_seconds"
        }
    }

    func health() async -> Health {
        let lastError = storage.lastError
        let uptime = ContinuousClock.now - started
        return Health(
            status: lastError == nil ? "ok" : "degraded",
            node: node,
            sessionsStored: storage.sessions,
            liveObjects: directory.liveCount,
            storage: .init(status: lastError == nil ? "ok" : "failing", path: storePath, lastError: lastError),
            uptimeSeconds: Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18,
            version: DurableHostServer.version)
    }
}

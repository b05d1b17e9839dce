import CurlHTTP
import Foundation
import HTTPServing
import Logging
import Prometheus
import ServerRuntime
import ServiceLifecycle
import ServiceMetrics
import SessionClient
import Settings
import SignIn

/// An MCP worker, assembled: the libcurl client, the session store and the HTTP server,
/// as services for one `ServiceGroup`.
public struct WorkerServer: Sendable {
    public static let version = "0.1.0"

    public let services: [any Service]

    public init(
        configuration: WorkerConfiguration,
        logger: Logger,
        registry: PrometheusCollectorRegistry? = nil,
        clock: ServerClock = .system,
        onListening: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws {
        let client = CurlClient(configuration: .init(userAgent: "greptile-mcp/\(Self.version)"))
        let store = SessionManagers.make(
            hosts: configuration.hosts, ringVersion: configuration.ringVersion, token: configuration.hostToken, client: client, limits: configuration.limits,
            logger: logger,
            retry: configuration.hostRetry, attemptTimeout: configuration.hostTimeout, clock: clock)
        let state = WorkerDependencies(
            configuration: configuration, store: store, client: client,
            metrics: RouteMetrics(registry: registry, prefix: "worker"), logger: logger, clock: clock)
        let application = HTTPService.make(
            responder: MCPResponder(worker: state), host: configuration.listen.host, port: configuration.listen.port,
            serverName: "mcp-worker/\(Self.version)", readTimeout: configuration.requestReadTimeout, logger: logger,
            onListening: onListening)
        var services: [any Service] = [CurlClientService(client: client)]
        if let service = store.service { services.append(service) }
        // Stopped in reverse: the HTTP server drains first, then calls whose clients left end,
        // then the last usage is written, then the store and the client they use.
        services.append(state.usageRecorder)
        if let path = configuration.apiKeysFile {
            services.append(try await ClientKeysReloader(path: path, interval: configuration.apiKeysReloadInterval, keys: state.keys, logger: logger))
        }
        if let signIn = state.signIn {
            // The signing keys are read (or made) before the first request, when the hosts answer.
            await signIn.prepare()
            services.append(signIn)
        }
        services.append(state.taskRunner.runners)
        services.append(state.calls.background)
        services.append(application)
        self.services = services
    }
}

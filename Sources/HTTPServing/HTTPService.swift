import Hummingbird
import Logging
import NIOCore
import ServerRuntime
import ServiceLifecycle

/// The HTTP server both executables run: HTTP/1.1 with keep-alive, an idle timeout, a limit
/// on how long a request may take to arrive (`ConnectionGuard`), and the bound address
/// announced once listening (`listening on http://ADDRESS`, which scripts and tests wait for).
public enum HTTPService {
    /// How long a connection may stay open with no request.
    public static let defaultIdleTimeout: Duration = .seconds(75)
    /// How long a request may take to arrive whole, from its first byte.
    public static let defaultReadTimeout: Duration = .seconds(30)

    public static func make<Responder: HTTPResponder>(
        responder: Responder, host: String, port: Int, serverName: String,
        readTimeout: Duration = defaultReadTimeout, idleTimeout: Duration = defaultIdleTimeout,
        logger: Logger, onListening: @escaping @Sendable (String) -> Void
    ) -> some Service where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
        return Application(
            responder: responder,
            server: .http1(
                configuration: .init(
                    additionalChannelHandlers: ConnectionGuard.handlers(readTimeout: readTimeout),
                    idleTimeout: .nanoseconds(idleTimeout.nanosecondsValue))),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: serverName),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
                onListening(address)
            },
            logger: logger)
    }
}

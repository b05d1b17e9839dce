import Foundation
import Logging
import Metrics
import OTel
import Prometheus
import ServiceLifecycle
import UnixSignals

/// What both executables do around their services: log to standard error, count into a
/// Prometheus registry, and run the services in one group that shuts down gracefully on
/// SIGTERM or SIGINT.
public enum ServiceRunner {
    /// How a process logs: `log_level` and `log_format`.
    public struct LogSettings: Sendable {
        public var level: Logger.Level
        public var format: StandardErrorLogHandler.Format

        public init(level: Logger.Level, format: StandardErrorLogHandler.Format) {
            self.level = level
            self.format = format
        }
    }

    /// Bootstraps logging and metrics; returns the registry `/metrics` exposes. Call once per
    /// process.
    public static func bootstrap(_ log: LogSettings) -> PrometheusCollectorRegistry {
        LoggingSystem.bootstrap { label in
            StandardErrorLogHandler(label: label, logLevel: log.level, format: log.format, metadataProvider: metadataProvider)
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// What every log line carries of the request under way: nginx's request id, and the trace
    /// and span ids when tracing is on (`trace_id`, `span_id`, `trace_flags`).
    static let metadataProvider = Logger.MetadataProvider.multiplex([RequestCorrelation.metadataProvider, OTel.makeLoggingMetadataProvider()])

    /// Runs `services` until a signal asks them to stop; the last ones stop first. A service
    /// still running `maximumShutdown` after the signal is cancelled.
    public static func run(_ services: [any Service], logger: Logger, maximumShutdown: Duration = .seconds(30)) async throws {
        var configuration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = maximumShutdown
        try await ServiceGroup(configuration: configuration).run()
        logger.notice("stopped")
    }

    /// Writes a configuration error to standard error, as `program: message`.
    public static func reportConfigurationError(program: String, _ message: String) {
        FileHandle.standardError.write(Data("\(program): \(message)\n".utf8))
    }
}

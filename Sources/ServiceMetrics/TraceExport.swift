import Foundation
import Logging
import OTel
import ServerRuntime
import ServiceLifecycle

/// Traces exported over OTLP/HTTP (swift-otel), configured by the standard OpenTelemetry
/// variables: on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
/// set (and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise);
/// `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`),
/// `OTEL_TRACES_SAMPLER_ARG`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_BSP_*` are read as the specification says; `OTEL_EXPORTER_OTLP_PROTOCOL` may be
/// `http/protobuf` or `http/json`. Only traces: metrics stay on `/metrics`, logs on standard
/// error.
public enum TraceExport {
    /// Whether `environment` asks for traces.
    public static func wanted(in environment: [String: String]) -> Bool {
        let endpoint = [environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], environment["OTEL_EXPORTER_OTLP_ENDPOINT"]]
            .contains { !($0 ?? "").trimmingCharacters(in: .whitespaces).isEmpty }
        let disabled = environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" || environment["OTEL_TRACES_EXPORTER"]?.lowercased() == "none"
        return endpoint && !disabled
    }

    /// What in `environment` these servers cannot honour, as a sentence; nil when nothing.
    /// Only OTLP over HTTP is built in (swift-otel would stop the process on `grpc`).
    public static func problem(in environment: [String: String]) -> String? {
        for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            guard let value = environment[name]?.trimmingCharacters(in: .whitespaces).lowercased(), !value.isEmpty else { continue }
            if !["http/protobuf", "http/json"].contains(value) {
                return "\(name)=\(value.prefix(40)) is not supported: use http/protobuf (the default) or http/json, to the collector's OTLP/HTTP port (4318)"
            }
        }
        return nil
    }

    struct Unsupported: Error, CustomStringConvertible {
        let description: String
    }

    /// Installs the OTLP tracer when `environment` asks for it, and returns the service that
    /// exports its spans (to run with the others: it flushes what is left at shutdown); nil
    /// when traces are off. Call once, at start.
    public static func bootstrap(
        serviceName: String, environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger
    ) throws -> (any Service)? {
        guard wanted(in: environment) else { return nil }
        if let problem = problem(in: environment) { throw Unsupported(description: problem) }
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        let service = try OTel.bootstrap(configuration: configuration, environment: environment)
        Traces.markEnabled()
        logger.notice(
            "exporting traces over OTLP",
            metadata: [
                "endpoint": "\(environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? environment["OTEL_EXPORTER_OTLP_ENDPOINT"] ?? "")",
                "sampler": "\(environment["OTEL_TRACES_SAMPLER"] ?? "parentbased_always_on")",
            ])
        return service
    }
}

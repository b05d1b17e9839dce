import ArgumentParser
import DurableHost
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import ServiceMetrics
import SessionModel
import Settings

/// The settings of `durable-host [serve]`, and serving with them: configuration in, services
/// out (README, "durable-host"). A library, so that the test-only host runs exactly this.
public struct ServeOptions: ParsableArguments {
    public init() {}

    @Option(help: "HOST:PORT to listen on (default 127.0.0.1:7400; port 0 picks a free one).")
    var listen: String?
    @Option(help: "This host's node name in the ring (default host-1).")
    var node: String?
    @Option(help: "Directory of the embedded SQLite storage (default ./data).")
    var data: String?
    @Option(help: "Ring members NAME=HOST:PORT,... including this host.")
    var peers: String?
    @Option(name: .customLong("ring-version"), help: "Version of the membership --peers describes; raise it with every change (default 1).")
    var ringVersion: Int?
    @Option(help: "JSON config file (deploy/staging.*, deploy/production.*).")
    var config: String?
    @Option(name: .customLong("token-file"), help: "File holding the bearer token between services.")
    var tokenFile: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?
    @Option(name: .customLong("log-format"), help: "text (default) or json: one JSON object per line.")
    var logFormat: String?
    @Option(help: "SQLite synchronous mode: full (fsync each commit, default) or normal.")
    var synchronous: String?
    @Option(name: .customLong("max-live-objects"), help: "Most sessions kept in memory (default 10000).")
    var maxLiveObjects: Int?
    @Option(name: .customLong("idle-timeout"), help: "Seconds before an unused session leaves memory (default 120).")
    var idleTimeout: Double?
    @Option(name: .customLong("idempotency-retention"), help: "Seconds an idempotency key is remembered (default 86400).")
    var idempotencyRetention: Double?
    @Option(name: .customLong("max-batch"), help: "Most writes committed in one transaction (default 2000).")
    var maxBatch: Int?
    @Option(name: .customLong("commits-in-flight"), help: "Transactions committed at once on PostgreSQL, each on its own connection (default 4).")
    var commitsInFlight: Int?
    @Option(name: .customLong("max-id-length"), help: "Longest session id in bytes (default 128).")
    var maxIdLength: Int?
    @Option(name: .customLong("max-content-bytes"), help: "Largest message content in bytes (default 262144).")
    var maxContentBytes: Int?
    @Option(name: .customLong("max-messages-per-session"), help: "Most messages per session (default 5000).")
    var maxMessagesPerSession: Int?
    @Option(name: .customLong("max-session-bytes"), help: "Most content bytes per session (default 33554432).")
    var maxSessionBytes: Int?
    @Option(name: .customLong("max-metadata-bytes"), help: "Largest metadata JSON in bytes (default 65536).")
    var maxMetadataBytes: Int?
    @Option(name: .customLong("max-body-bytes"), help: "Largest request body in bytes (default 16777216).")
    var maxBodyBytes: Int?
    @Option(name: .customLong("request-read-timeout"), help: "Seconds a request may take to arrive whole, from its first byte (default 30).")
    var requestReadTimeout: Double?
    @Option(help: "Where sessions are kept: sqlite (default, one file per host) or postgres (one database shared by the hosts).")
    var storage: String?
    @Option(
        name: .customLong("database-url-file"),
        help: "File holding the PostgreSQL URL (or DURABLE_HOST_DATABASE_URL); never the URL itself on the command line.")
    var databaseURLFile: String?
    @Option(help: "HOST:PORT other hosts and workers reach this host at (postgres; default: the listen address).")
    var advertise: String?
    @Option(name: .customLong("lease-duration"), help: "Seconds a member's lease lasts (postgres; default 3).")
    var leaseDuration: Double?
    @Option(name: .customLong("lease-renew-interval"), help: "Seconds between lease renewals (postgres; default 1).")
    var leaseRenewInterval: Double?
    @Option(name: .customLong("storage-timeout"), help: "Seconds one database operation may take before the request fails with 503 (postgres; default 2).")
    var storageTimeout: Double?
    @Option(
        help: "Seconds a session without a lifetime of its own (a conversation) is kept after its last write; 0 keeps it for ever (default 7776000, 90 days).")
    var retention: Double?
    @Option(name: .customLong("expiry-interval"), help: "Seconds between sweeps for expired sessions (default 60).")
    var expiryInterval: Double?
    @Option(name: .customLong("compress-threshold"), help: "Message content longer than this many bytes is stored compressed; 0: never (default 2048).")
    var compressThreshold: Int?

    static let settingKeys: Set<String> = [
        "listen", "node", "data", "peers", "ring_version", "token_file", "log_level", "log_format", "synchronous", "max_live_objects",
        "idle_timeout", "idempotency_retention", "max_batch", "commits_in_flight", "max_id_length", "max_content_bytes",
        "max_messages_per_session", "max_session_bytes", "max_metadata_bytes", "max_body_bytes", "request_read_timeout",
        "storage", "database_url_file", "advertise", "lease_duration", "lease_renew_interval", "storage_timeout",
        "retention", "expiry_interval", "compress_threshold",
    ]

    /// Runs the host until it is told to stop (SIGTERM, SIGINT). `commitsThrough` is what the
    /// group committer commits through: the store itself, unless a test holds commits back.
    public func run(commitsThrough: @escaping @Sendable (any SessionStore, Logger) -> any SessionStore = { store, _ in store }) async throws {
        let (configuration, log): (HostConfiguration, ServiceRunner.LogSettings)
        do {
            (configuration, log) = try resolve()
            try configuration.validate()
        } catch let error as SettingsError {
            ServiceRunner.reportConfigurationError(program: "durable-host", error.message)
            throw ExitCode(2)
        }

        let registry = ServiceRunner.bootstrap(log)
        let logger = {
            var logger = Logger(label: "durable-host")
            logger[metadataKey: "node"] = "\(configuration.node)"
            return logger
        }()
        let traces: (any Service)?
        do {
            traces = try TraceExport.bootstrap(serviceName: "durable-host", logger: logger)
        } catch {
            ServiceRunner.reportConfigurationError(program: "durable-host", "cannot export traces: \(error)")
            throw ExitCode(2)
        }

        let server: DurableHostServer
        do {
            server = try await DurableHostServer(
                configuration: configuration, logger: logger, registry: registry, commitsThrough: { commitsThrough($0, logger) }
            ) { address in
                logger.notice("listening on http://\(address)")
            }
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        logger.info(
            "starting",
            metadata: [
                "storage": "\(configuration.storage == .postgres ? configuration.databaseURL?.description ?? "postgres" : configuration.dataDirectory)",
                "peers": "\(configuration.peers.map(\.description))",
                "auth": "\(configuration.token == nil ? "none (loopback only)" : "bearer token")",
                "synchronous": "\(configuration.synchronous.rawValue)",
            ])
        // The trace exporter stops last: it sends the spans of the requests that finish meanwhile.
        try await ServiceRunner.run((traces.map { [$0] } ?? []) + server.services, logger: logger)
    }

    private func resolve() throws -> (HostConfiguration, ServiceRunner.LogSettings) {
        let settings = try Settings(environmentPrefix: "DURABLE_HOST", configPath: config, knownKeys: Self.settingKeys)
        var configuration = HostConfiguration()
        if let text = settings.raw("listen", flag: listen) {
            do {
                configuration.listen = try ListenAddress(parsing: text.text)
            } catch {
                throw SettingsError("\(text.origin): \(error.message)")
            }
        }
        configuration.node = settings.string("node", flag: node, default: configuration.node)
        configuration.dataDirectory = settings.string("data", flag: data, default: configuration.dataDirectory)
        configuration.peers = try NamedAddress.parseList(settings.list("peers", flag: peers), origin: "peers")
        configuration.ringVersion = try settings.int("ring_version", flag: ringVersion, default: 1, in: 1...Int(Int32.max))
        configuration.token = try settings.secret(fileKey: "token_file", fileFlag: tokenFile, variable: "DURABLE_HOST_TOKEN")
        if let text = settings.raw("synchronous", flag: synchronous) {
            guard let mode = SQLiteSessionStore.Synchronous(rawValue: text.text.lowercased()) else {
                throw SettingsError("\(text.origin) must be full or normal (got '\(text.text)')")
            }
            configuration.synchronous = mode
        }
        configuration.maxLiveObjects = try settings.int("max_live_objects", flag: maxLiveObjects, default: configuration.maxLiveObjects)
        configuration.idleTimeout = .seconds(try settings.seconds("idle_timeout", flag: idleTimeout, default: 120, in: 0.1...86_400))
        configuration.idempotencyRetention = .seconds(
            try settings.seconds("idempotency_retention", flag: idempotencyRetention, default: 86_400, in: 1...(30 * 86_400)))
        configuration.maxBatch = try settings.int("max_batch", flag: maxBatch, default: configuration.maxBatch, in: 1...100_000)
        // At most half the pool's 16 connections: loads, listings and membership need theirs.
        configuration.commitsInFlight = try settings.int(
            "commits_in_flight", flag: commitsInFlight, default: configuration.commitsInFlight, in: 1...8)
        configuration.requestReadTimeout = .milliseconds(
            Int64(1000 * (try settings.seconds("request_read_timeout", flag: requestReadTimeout, default: 30, in: 0.1...3600))))
        configuration.limits = try limits(settings)
        try resolveStorage(settings, into: &configuration)
        configuration.retention = .milliseconds(
            Int64(1000 * (try settings.seconds("retention", flag: retention, default: 90 * 86_400, in: 0...(10 * 366 * 86_400)))))
        configuration.expiryInterval = .milliseconds(
            Int64(1000 * (try settings.seconds("expiry_interval", flag: expiryInterval, default: 60, in: 0.05...86_400))))
        configuration.compressThreshold = try settings.int(
            "compress_threshold", flag: compressThreshold, default: configuration.compressThreshold, in: 0...Int(Int32.max))
        let log = ServiceRunner.LogSettings(
            level: try settings.logLevel("log_level", flag: logLevel, default: .info),
            format: try settings.choice("log_format", flag: logFormat, default: .text))
        return (configuration, log)
    }

    /// What a session may hold, and a request may carry.
    private func limits(_ settings: Settings) throws -> SessionLimits {
        var limits = SessionLimits()
        limits.maxIdLength = try settings.int("max_id_length", flag: maxIdLength, default: limits.maxIdLength, in: 1...1024)
        limits.maxContentBytes = try settings.int("max_content_bytes", flag: maxContentBytes, default: limits.maxContentBytes)
        limits.maxMessagesPerSession = try settings.int(
            "max_messages_per_session", flag: maxMessagesPerSession, default: limits.maxMessagesPerSession)
        limits.maxSessionBytes = try settings.int("max_session_bytes", flag: maxSessionBytes, default: limits.maxSessionBytes)
        limits.maxMetadataBytes = try settings.int("max_metadata_bytes", flag: maxMetadataBytes, default: limits.maxMetadataBytes)
        limits.maxBodyBytes = try settings.int("max_body_bytes", flag: maxBodyBytes, default: limits.maxBodyBytes)
        return limits
    }

    /// The storage backend and, for PostgreSQL, the database, the lease and the storage's time limit.
    private func resolveStorage(_ settings: Settings, into configuration: inout HostConfiguration) throws {
        if let text = settings.raw("storage", flag: storage) {
            guard let backend = HostConfiguration.StorageBackend(rawValue: text.text.lowercased()) else {
                throw SettingsError("\(text.origin) must be sqlite or postgres (got '\(text.text)')")
            }
            configuration.storage = backend
        }
        if let url = try settings.secret(fileKey: "database_url_file", fileFlag: databaseURLFile, variable: "DURABLE_HOST_DATABASE_URL") {
            configuration.databaseURL = try DatabaseURL(parsing: url)
        }
        if let text = settings.raw("advertise", flag: advertise) {
            do {
                configuration.advertise = try ListenAddress(parsing: text.text)
            } catch {
                throw SettingsError("\(text.origin): \(error.message)")
            }
        }
        configuration.leaseDuration = .milliseconds(
            Int64(1000 * (try settings.seconds("lease_duration", flag: leaseDuration, default: 3, in: 0.5...600))))
        configuration.leaseRenewInterval = .milliseconds(
            Int64(1000 * (try settings.seconds("lease_renew_interval", flag: leaseRenewInterval, default: 1, in: 0.1...300))))
        configuration.storageTimeout = .milliseconds(
            Int64(1000 * (try settings.seconds("storage_timeout", flag: storageTimeout, default: 2, in: 0.1...300))))
    }
}

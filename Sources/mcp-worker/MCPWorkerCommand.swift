import ArgumentParser
import CurlHTTP
import Foundation
import Greptile
import Logging
import MCPWorker
import Prometheus
import ServiceLifecycle
import ServiceMetrics
import SessionModel
import Settings
import SignIn

/// `mcp-worker`: configuration in, services out (README, "mcp-worker").
@main
struct MCPWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp-worker",
        abstract: "Serves Greptile's code search as MCP tools over Streamable HTTP (/mcp); stateless.",
        discussion: """
            Every setting is a flag, an environment variable MCP_WORKER_<KEY> or a key of the
            --config JSON file, in that order of precedence. Secrets come from the environment
            only: GREPTILE_API_KEY, GITHUB_TOKEN, DURABLE_HOST_TOKEN (or host_token_file), and
            client keys from MCP_WORKER_API_KEYS (or api_keys_file), written NAME:KEY.
            """,
        version: WorkerServer.version,
        subcommands: [Serve.self, Check.self],
        defaultSubcommand: Serve.self)
}

/// `mcp-worker [serve]`: runs the worker until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the worker (the default).")

    @OptionGroup var options: WorkerOptions

    func run() async throws {
        let (configuration, log): (WorkerConfiguration, ServiceRunner.LogSettings)
        do {
            (configuration, log) = try options.resolve()
            try configuration.validate()
        } catch let error as SettingsError {
            ServiceRunner.reportConfigurationError(program: "mcp-worker", error.message)
            throw ExitCode(2)
        }

        let registry = ServiceRunner.bootstrap(log)
        let logger = Logger(label: "mcp-worker")
        let traces: (any Service)?
        do {
            traces = try TraceExport.bootstrap(serviceName: "mcp-worker", logger: logger)
        } catch {
            ServiceRunner.reportConfigurationError(program: "mcp-worker", "cannot export traces: \(error)")
            throw ExitCode(2)
        }

        if configuration.apiKeys.isEmpty && configuration.signIn == nil {
            logger.warning("no API keys configured: /mcp is open to anyone who can reach \(configuration.listen) (allowed on loopback only)")
        }
        if let signIn = configuration.signIn {
            logger.info("sign-in is on", metadata: ["public_url": "\(signIn.publicURL)", "provider": "\(signIn.provider)"])
        }
        if configuration.hosts.isEmpty {
            logger.warning("no --hosts: sessions and conversations are kept in memory and lost when this worker stops")
        }
        for problem in configuration.upstream.problems {
            logger.warning("\(problem)")
        }
        logger.info(
            "starting",
            metadata: [
                "hosts": "\(configuration.hosts.map(\.description))", "principals": "\(configuration.apiKeys.count)",
                "greptile": "\(configuration.upstream.greptileBaseURL)", "github": "\(configuration.upstream.githubBaseURL)",
            ])
        let server: WorkerServer
        do {
            server = try await WorkerServer(configuration: configuration, logger: logger, registry: registry) { address in
                logger.notice("listening on http://\(address)")
            }
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        // The trace exporter stops last: it sends the spans of the requests that finish meanwhile.
        try await ServiceRunner.run((traces.map { [$0] } ?? []) + server.services, logger: logger)
    }

}

/// `mcp-worker check`: diagnoses the configuration a worker would run with.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Diagnose the configuration: secrets present and accepted, hosts reachable, ring agreed.",
        discussion: "Prints one line per check, each problem with its fix; exits 1 when there is a problem.")

    @OptionGroup var options: WorkerOptions

    func run() async throws {
        let configuration: WorkerConfiguration
        do {
            configuration = try options.resolve().0
            try configuration.validate()
        } catch let error as SettingsError {
            print("problem configuration: \(error.message)")
            throw ExitCode(1)
        }
        let findings = await WorkerCheck.run(configuration)
        for finding in findings {
            print(finding.line)
        }
        let problems = findings.filter { !$0.ok }.count
        print(problems == 0 ? "check: all good" : "check: \(problems) problem\(problems == 1 ? "" : "s")")
        if problems > 0 { throw ExitCode(1) }
    }
}

/// The settings both subcommands read.
struct WorkerOptions: ParsableArguments {
    @Option(help: "HOST:PORT to listen on (default 127.0.0.1:8080; port 0 picks a free one).")
    var listen: String?
    @Option(help: "Durable hosts NAME=HOST:PORT,...; none keeps sessions in memory (local development).")
    var hosts: String?
    @Option(name: .customLong("ring-version"), help: "Version of the membership --hosts describes, as the hosts' ring_version (default 1).")
    var ringVersion: Int?
    @Option(help: "JSON config file (deploy/staging.*, deploy/production.*).")
    var config: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?
    @Option(name: .customLong("log-format"), help: "text (default) or json: one JSON object per line.")
    var logFormat: String?
    @Option(name: .customLong("api-keys-file"), help: "File of client keys, one NAME:KEY per line.")
    var apiKeysFile: String?
    @Option(name: .customLong("host-token-file"), help: "File holding the durable hosts' bearer token.")
    var hostTokenFile: String?
    @Option(name: .customLong("admin-key-file"), help: "File holding the operators' key for /admin (or MCP_WORKER_ADMIN_KEY).")
    var adminKeyFile: String?
    @Option(
        name: .customLong("api-keys-reload-interval"),
        help: "Seconds between checks of api_keys_file for changes; SIGHUP checks at once (default 15).")
    var apiKeysReloadInterval: Double?
    @Option(name: .customLong("allowed-origins"), help: "Browser origins allowed besides localhost, comma-separated.")
    var allowedOrigins: String?
    @Option(name: .customLong("history-window"), help: "Most conversation messages sent to Greptile with a query (default 20).")
    var historyWindow: Int?
    @Option(name: .customLong("session-lifetime"), help: "Seconds an unused MCP session lives (default 86400).")
    var sessionLifetime: Double?
    @Option(name: .customLong("resource-page-size"), help: "Conversations per resources/list page (default 50).")
    var resourcePageSize: Int?
    @Option(name: .customLong("host-timeout"), help: "Seconds one call to a durable host may take (default 2).")
    var hostTimeout: Double?
    @Option(name: .customLong("host-attempts"), help: "Attempts per durable-host call before the in-memory fallback (default 3).")
    var hostAttempts: Int?
    @Option(name: .customLong("query-timeout"), help: "Seconds a Greptile query or search may take (default 120).")
    var queryTimeout: Double?
    @Option(name: .customLong("upstream-timeout"), help: "Seconds other Greptile and GitHub calls may take (default 30).")
    var upstreamTimeout: Double?
    @Option(name: .customLong("upstream-attempts"), help: "Attempts per Greptile or GitHub call on 429, 5xx or transport errors (default 3).")
    var upstreamAttempts: Int?
    @Option(name: .customLong("max-body-bytes"), help: "Largest request body on /mcp in bytes (default 1048576).")
    var maxBodyBytes: Int?
    @Option(name: .customLong("request-read-timeout"), help: "Seconds a request may take to arrive whole, from its first byte (default 30).")
    var requestReadTimeout: Double?
    @Option(name: .customLong("public-url"), help: "The origin clients reach this server at (https://mcp.example.com): sign-in's issuer.")
    var publicURL: String?
    @Option(name: .customLong("login-provider"), help: "Who people sign in with: oidc (any OpenID Connect provider) or github; none: client keys only.")
    var loginProvider: String?
    @Option(name: .customLong("login-issuer"), help: "oidc: the provider's issuer URL; github: GitHub's site (default https://github.com).")
    var loginIssuer: String?
    @Option(name: .customLong("login-client-id"), help: "This server's OAuth client id at the provider.")
    var loginClientID: String?
    @Option(name: .customLong("login-client-secret-file"), help: "File holding that client's secret (or MCP_WORKER_LOGIN_CLIENT_SECRET).")
    var loginClientSecretFile: String?
    @Option(name: .customLong("login-allow"), help: "Who may sign in: addresses, @domains, org:NAMEs (GitHub organisations), comma-separated.")
    var loginAllow: String?
    @Option(name: .customLong("login-ca-file"), help: "CA certificates (PEM) to verify the provider and client metadata documents with.")
    var loginCAFile: String?
    @Option(
        name: .customLong("client-metadata-allow-private"),
        help: "Fetch client metadata documents from private and loopback addresses too (true/false; default false).")
    var clientMetadataAllowPrivate: String?
    @Option(name: .customLong("access-token-lifetime"), help: "Seconds a signed-in client's access token lives (default 3600).")
    var accessTokenLifetime: Double?
    @Option(name: .customLong("task-ttl"), help: "Seconds a task is kept after its last change when the client asks for no ttl (default 3600).")
    var taskTTL: Double?
    @Option(name: .customLong("task-ttl-max"), help: "Longest ttl a task is granted, in seconds (default 86400).")
    var taskTTLMax: Double?
    @Option(name: .customLong("tasks-per-principal"), help: "Tasks one principal may have working at once (default 20).")
    var tasksPerPrincipal: Int?
    @Option(
        name: .customLong("task-lease"), help: "Seconds a task's runner holds it without renewing; a lost runner's task is taken over after it (default 15).")
    var taskLease: Double?
    @Option(name: .customLong("index-poll-interval"), help: "Seconds between an indexing task's looks at Greptile's progress (default 5).")
    var indexPollInterval: Double?

    static let settingKeys: Set<String> = [
        "listen", "hosts", "ring_version", "log_level", "log_format", "api_keys_file", "host_token_file", "allowed_origins", "history_window",
        "session_lifetime", "host_timeout", "host_attempts", "query_timeout", "upstream_timeout", "upstream_attempts",
        "max_body_bytes", "greptile_base_url", "github_api_url", "request_read_timeout", "admin_key_file", "resource_page_size", "api_keys_reload_interval",
        "public_url", "login_provider", "login_issuer", "login_client_id", "login_client_secret_file", "login_allow", "login_ca_file",
        "client_metadata_allow_private", "access_token_lifetime", "task_ttl", "task_ttl_max", "tasks_per_principal", "task_lease",
        "index_poll_interval",
    ]

    func resolve() throws -> (WorkerConfiguration, ServiceRunner.LogSettings) {
        let settings = try Settings(environmentPrefix: "MCP_WORKER", configPath: config, knownKeys: Self.settingKeys)
        let environment = settings.environment
        var configuration = WorkerConfiguration()
        if let text = settings.raw("listen", flag: listen) {
            do {
                configuration.listen = try ListenAddress(parsing: text.text)
            } catch {
                throw SettingsError("\(text.origin): \(error.message)")
            }
        }
        configuration.hosts = try NamedAddress.parseList(settings.list("hosts", flag: hosts), origin: "hosts")
        configuration.ringVersion = try settings.int("ring_version", flag: ringVersion, default: 1, in: 1...Int(Int32.max))
        configuration.hostToken = try settings.secret(fileKey: "host_token_file", fileFlag: hostTokenFile, variable: "DURABLE_HOST_TOKEN")
        configuration.apiKeys = try apiKeys(settings)
        configuration.apiKeysFile = settings.raw("api_keys_file", flag: apiKeysFile)?.text
        configuration.apiKeysReloadInterval = .milliseconds(
            Int64(1000 * (try settings.seconds("api_keys_reload_interval", flag: apiKeysReloadInterval, default: 15, in: 0.1...3600))))
        if let key = try settings.secret(fileKey: "admin_key_file", fileFlag: adminKeyFile, variable: "MCP_WORKER_ADMIN_KEY") {
            guard key.utf8.count >= 16 else { throw SettingsError("the admin key (admin_key_file or MCP_WORKER_ADMIN_KEY) must be at least 16 characters") }
            configuration.adminKey = key
        }
        configuration.allowedOrigins = settings.list("allowed_origins", flag: allowedOrigins)
        configuration.historyWindow = try settings.int("history_window", flag: historyWindow, default: configuration.historyWindow, in: 1...10_000)
        configuration.sessionLifetime = .milliseconds(
            Int64(1000 * (try settings.seconds("session_lifetime", flag: sessionLifetime, default: 86_400, in: 1...(365 * 86_400)))))
        configuration.resourcePageSize = try settings.int(
            "resource_page_size", flag: resourcePageSize, default: configuration.resourcePageSize, in: 1...SessionListing.maxLimit)
        configuration.hostTimeout = .milliseconds(
            Int64(1000 * (try settings.seconds("host_timeout", flag: hostTimeout, default: 2, in: 0.05...300))))
        configuration.hostRetry.attempts = try settings.int("host_attempts", flag: hostAttempts, default: 3, in: 1...10)
        configuration.maxBodyBytes = try settings.int("max_body_bytes", flag: maxBodyBytes, default: configuration.maxBodyBytes, in: 1024...(64 << 20))
        configuration.requestReadTimeout = .milliseconds(
            Int64(1000 * (try settings.seconds("request_read_timeout", flag: requestReadTimeout, default: 30, in: 0.1...3600))))

        // Base URLs: the variables the original server read, or the config file.
        var upstream = UpstreamConfiguration(
            greptileBaseURL: environment["GREPTILE_BASE_URL"] ?? settings.string("greptile_base_url", flag: nil, default: "https://api.greptile.com/v2"),
            githubBaseURL: environment["GITHUB_API_URL"] ?? settings.string("github_api_url", flag: nil, default: "https://api.github.com"),
            greptileAPIKey: nonEmpty(environment["GREPTILE_API_KEY"]),
            githubToken: nonEmpty(environment["GITHUB_TOKEN"]))
        for (name, url) in [("GREPTILE_BASE_URL", upstream.greptileBaseURL), ("GITHUB_API_URL", upstream.githubBaseURL)]
        where !(url.hasPrefix("https://") || url.hasPrefix("http://")) {
            throw SettingsError("\(name) must be an http:// or https:// URL (got '\(url)')")
        }
        upstream.queryTimeout = .milliseconds(Int64(1000 * (try settings.seconds("query_timeout", flag: queryTimeout, default: 120, in: 1...3600))))
        upstream.callTimeout = .milliseconds(Int64(1000 * (try settings.seconds("upstream_timeout", flag: upstreamTimeout, default: 30, in: 1...3600))))
        upstream.retry.attempts = try settings.int("upstream_attempts", flag: upstreamAttempts, default: 3, in: 1...10)
        configuration.upstream = upstream
        configuration.signIn = try signIn(settings, githubAPI: upstream.githubBaseURL)
        configuration.taskTTLMax = try settings.seconds("task_ttl_max", flag: taskTTLMax, default: 86_400, in: 1...(30 * 86_400))
        configuration.taskTTL = try settings.seconds("task_ttl", flag: taskTTL, default: min(3_600, configuration.taskTTLMax), in: 1...configuration.taskTTLMax)
        configuration.tasksPerPrincipal = try settings.int("tasks_per_principal", flag: tasksPerPrincipal, default: 20, in: 1...10_000)
        configuration.taskLease = try settings.seconds("task_lease", flag: taskLease, default: 15, in: 1...600)
        configuration.indexPollInterval = .milliseconds(
            Int64(1000 * (try settings.seconds("index_poll_interval", flag: indexPollInterval, default: 5, in: 0.1...600))))
        let log = ServiceRunner.LogSettings(
            level: try settings.logLevel("log_level", flag: logLevel, default: .info),
            format: try settings.choice("log_format", flag: logFormat, default: .text))
        return (configuration, log)
    }

    /// Sign-in, when `login_provider` names one: every setting it needs, or the one missing.
    private func signIn(_ settings: Settings, githubAPI: String) throws -> SignInConfiguration? {
        guard let provider = settings.raw("login_provider", flag: loginProvider) else { return nil }
        func required(_ key: String, _ flag: String?) throws -> String {
            guard let value = settings.raw(key, flag: flag)?.text, !value.isEmpty else {
                throw SettingsError("\(key) is required with login_provider \(provider.text)")
            }
            return value
        }
        let publicURL = try required("public_url", publicURL)
        if let problem = SignInConfiguration.checkPublicURL(publicURL) { throw SettingsError(problem) }
        let kind: SignInConfiguration.ProviderKind
        switch provider.text.lowercased() {
        case "oidc":
            let issuer = try required("login_issuer", loginIssuer)
            guard issuer.hasPrefix("https://") || issuer.hasPrefix("http://127.0.0.1") || issuer.hasPrefix("http://localhost") else {
                throw SettingsError("login_issuer must be an https URL (got '\(issuer)')")
            }
            kind = .oidc(issuer: issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer)
        case "github":
            let site = settings.raw("login_issuer", flag: loginIssuer)?.text ?? "https://github.com"
            kind = .github(web: site.hasSuffix("/") ? String(site.dropLast()) : site, api: githubAPI)
        default:
            throw SettingsError("\(provider.origin) must be oidc or github (got '\(provider.text)')")
        }
        guard let secret = try settings.secret(fileKey: "login_client_secret_file", fileFlag: loginClientSecretFile, variable: "MCP_WORKER_LOGIN_CLIENT_SECRET")
        else { throw SettingsError("the provider's client secret is required: login_client_secret_file, or MCP_WORKER_LOGIN_CLIENT_SECRET") }
        let allow: AllowList
        do {
            allow = try AllowList(parsing: try required("login_allow", loginAllow))
        } catch let error as SignInSettingError {
            throw SettingsError(error.message)
        }
        var configuration = SignInConfiguration(
            publicURL: publicURL, provider: kind, clientID: try required("login_client_id", loginClientID), clientSecret: secret, allow: allow)
        configuration.caFile = settings.raw("login_ca_file", flag: loginCAFile)?.text
        configuration.accessTokenLifetime = try settings.seconds("access_token_lifetime", flag: accessTokenLifetime, default: 3_600, in: 5...86_400)
        if let text = settings.raw("client_metadata_allow_private", flag: clientMetadataAllowPrivate) {
            guard let flag = Bool(text.text.lowercased()) else { throw SettingsError("\(text.origin) must be true or false") }
            configuration.metadataAllowPrivate = flag
        }
        return configuration
    }

    /// Client keys: the file named by `api_keys_file`, else `MCP_WORKER_API_KEYS`.
    private func apiKeys(_ settings: Settings) throws(SettingsError) -> APIKeys {
        if let (path, origin) = settings.raw("api_keys_file", flag: apiKeysFile) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw SettingsError("\(origin) names \(path), which cannot be read")
            }
            let keys = try APIKeys(parsing: text.split(whereSeparator: \.isNewline).map(String.init), origin: "\(path)")
            guard !keys.isEmpty else { throw SettingsError("\(origin) names \(path), which holds no NAME:KEY line") }
            return keys
        }
        guard let text = settings.environment["MCP_WORKER_API_KEYS"] else { return .none }
        return try APIKeys(parsing: text.split(separator: ",").map(String.init), origin: "MCP_WORKER_API_KEYS")
    }

    private func nonEmpty(_ value: String?) -> String? {
        guard let trimmed = value?.trimmingCharacters(in: .whitespacesAndNewlines), !trimmed.isEmpty else { return nil }
        return trimmed
    }
}

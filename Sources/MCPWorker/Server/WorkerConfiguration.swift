import CurlHTTP
import Greptile
import SessionModel
import Settings
import SignIn

/// Everything an MCP worker is configured with (README, "mcp-worker").
public struct WorkerConfiguration: Sendable {
    public var listen: ListenAddress
    /// The durable hosts; empty for in-memory sessions (local development).
    public var hosts: [NamedAddress]
    /// The version of the membership `hosts` describes; must match the hosts' `ring_version`.
    public var ringVersion: Int = 1
    /// Token the hosts require (`DURABLE_HOST_TOKEN`).
    public var hostToken: String?
    /// Keys clients present; empty runs open, which only loopback allows.
    public var apiKeys: APIKeys
    /// The file they came from, watched for changes (every `apiKeysReloadInterval`, and on
    /// SIGHUP); nil when they came from the environment (fixed until a restart).
    public var apiKeysFile: String?
    public var apiKeysReloadInterval: Duration = .seconds(15)
    /// The operators' key for `/admin` (everyone's data); nil: only an open worker's `/admin` serves everyone.
    public var adminKey: String?
    /// Origins allowed besides localhost ones (`https://app.example.com`).
    public var allowedOrigins: [String]
    public var upstream: UpstreamConfiguration
    /// Largest request body accepted on `/mcp`.
    public var maxBodyBytes: Int
    /// Most messages of a conversation sent to Greptile with a query.
    public var historyWindow: Int
    /// A transport session unused this long expires.
    public var sessionLifetime: Duration
    /// Conversations per `resources/list` page.
    public var resourcePageSize: Int = 50
    /// Attempts per host call, and the limit on one.
    public var hostRetry: RetryPolicy
    public var hostTimeout: Duration
    public var limits: SessionLimits
    /// How long a request may take to arrive whole, from its first byte (slow clients are cut off).
    public var requestReadTimeout: Duration = .seconds(30)
    /// Sign-in with the team's identity provider (OAuth 2.1); nil: client keys only.
    public var signIn: SignInConfiguration?
    /// Tasks: seconds one is kept after its last change when the client asks for no `ttl`, the
    /// longest `ttl` granted, how many one principal may have working, how long a runner holds
    /// one without renewing (a lost runner's task is taken over after it), and how often an
    /// indexing task asks Greptile how far it got.
    public var taskTTL: Double = 3_600
    public var taskTTLMax: Double = 86_400
    public var tasksPerPrincipal = 20
    public var taskLease: Double = 15
    public var indexPollInterval: Duration = .seconds(5)

    public init(
        listen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 8080),
        hosts: [NamedAddress] = [],
        hostToken: String? = nil,
        apiKeys: APIKeys = .none,
        allowedOrigins: [String] = [],
        upstream: UpstreamConfiguration = UpstreamConfiguration(),
        maxBodyBytes: Int = 1 << 20,
        historyWindow: Int = 20,
        sessionLifetime: Duration = .seconds(24 * 3600),
        hostRetry: RetryPolicy = RetryPolicy(),
        hostTimeout: Duration = .seconds(2),
        limits: SessionLimits = .default
    ) {
        self.listen = listen
        self.hosts = hosts
        self.hostToken = hostToken
        self.apiKeys = apiKeys
        self.allowedOrigins = allowedOrigins
        self.upstream = upstream
        self.maxBodyBytes = maxBodyBytes
        self.historyWindow = historyWindow
        self.sessionLifetime = sessionLifetime
        self.hostRetry = hostRetry
        self.hostTimeout = hostTimeout
        self.limits = limits
    }

    /// Refuses configurations that must not run: open (no keys, no sign-in) beyond loopback.
    public func validate() throws(SettingsError) {
        if apiKeys.isEmpty && signIn == nil && !listen.isLoopback {
            throw SettingsError(
                "refusing to listen on \(listen) without API keys: set MCP_WORKER_API_KEYS or api_keys_file (NAME:KEY), or listen on 127.0.0.1")
        }
        for origin in allowedOrigins where !(origin.hasPrefix("http://") || origin.hasPrefix("https://")) {
            throw SettingsError("allowed_origins: '\(origin)' must be an origin like https://app.example.com")
        }
    }
}

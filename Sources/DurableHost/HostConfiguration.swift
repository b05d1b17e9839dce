import HashRing
import SessionModel
import Settings

/// Everything a durable host is configured with (README, "durable-host").
public struct HostConfiguration: Sendable {
    public var listen: ListenAddress
    public var node: String
    public var dataDirectory: String
    /// The ring's members, this host among them; empty for a single host.
    public var peers: [NamedAddress]
    /// The version of the membership `peers` describes; raised with every change.
    public var ringVersion: Int
    /// Bearer token every route but `/health` requires; nil for none (loopback only).
    public var token: String?
    public var limits: SessionLimits
    public var synchronous: SQLiteSessionStore.Synchronous
    /// Most session objects kept in memory.
    public var maxLiveObjects: Int
    /// An object unused this long is evicted from memory.
    public var idleTimeout: Duration
    /// How long an idempotency key is remembered.
    public var idempotencyRetention: Duration
    /// Most mutations committed in one transaction.
    public var maxBatch: Int
    /// Transactions in flight at once on PostgreSQL, each on its own connection (a local file
    /// has one writer: one at a time).
    public var commitsInFlight: Int = 4
    /// How long a request may take to arrive whole, from its first byte (slow clients are cut off).
    public var requestReadTimeout: Duration = .seconds(30)

    /// Where sessions are kept.
    public enum StorageBackend: String, Sendable, CaseIterable {
        /// One SQLite file per host (the default, embedded): a ring of configured `peers`.
        case sqlite
        /// One PostgreSQL database shared by every host: membership by leases in it.
        case postgres
    }

    public var storage: StorageBackend = .sqlite
    /// The database (`storage = postgres`), from the environment or a file, never a flag.
    public var databaseURL: DatabaseURL?
    /// The address other hosts and workers reach this host at (`storage = postgres`); the
    /// listen address (with the port bound) when nil.
    public var advertise: ListenAddress?
    /// How long a member's lease lasts, and how often it is renewed (`storage = postgres`).
    public var leaseDuration: Duration = .seconds(3)
    public var leaseRenewInterval: Duration = .seconds(1)
    /// Limit on one operation of the database (`storage = postgres`): past it, 503.
    public var storageTimeout: Duration = .seconds(2)
    /// How long a session that sets no lifetime of its own (a conversation) is kept after its
    /// last write; zero keeps it for ever.
    public var retention: Duration = .seconds(90 * 86_400)
    /// How often the expiry sweep looks for sessions past their lifetime.
    public var expiryInterval: Duration = .seconds(60)
    /// Message content longer than this many bytes is stored compressed; 0: never.
    public var compressThreshold: Int = 2048

    public init(
        listen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 7400),
        node: String = "host-1",
        dataDirectory: String = "./data",
        peers: [NamedAddress] = [],
        ringVersion: Int = 1,
        token: String? = nil,
        limits: SessionLimits = .default,
        synchronous: SQLiteSessionStore.Synchronous = .full,
        maxLiveObjects: Int = 10_000,
        idleTimeout: Duration = .seconds(120),
        idempotencyRetention: Duration = .seconds(24 * 3600),
        maxBatch: Int = 2_000
    ) {
        self.listen = listen
        self.node = node
        self.dataDirectory = dataDirectory
        self.peers = peers
        self.ringVersion = ringVersion
        self.token = token
        self.limits = limits
        self.synchronous = synchronous
        self.maxLiveObjects = maxLiveObjects
        self.idleTimeout = idleTimeout
        self.idempotencyRetention = idempotencyRetention
        self.maxBatch = maxBatch
    }

    /// The ring: `peers`, or this host alone.
    public var membership: Membership {
        let members = peers.isEmpty ? [NamedAddress(name: node, address: listen)] : peers
        return Membership(version: ringVersion, hosts: members)
    }

    /// Refuses configurations that must not run: listening beyond loopback with no token.
    public func validate() throws(SettingsError) {
        if token == nil && !listen.isLoopback {
            throw SettingsError(
                "refusing to listen on \(listen) without a token: set DURABLE_HOST_TOKEN or token_file, or listen on 127.0.0.1")
        }
        if node.isEmpty {
            throw SettingsError("node name must not be empty (--node)")
        }
        if !peers.isEmpty && !peers.contains(where: { $0.name == node }) {
            throw SettingsError("--peers does not list this host's own node name '\(node)'")
        }
        guard storage == .postgres else { return }
        if databaseURL == nil {
            throw SettingsError("storage postgres needs the database: set DURABLE_HOST_DATABASE_URL or database_url_file (never a flag)")
        }
        if !peers.isEmpty {
            throw SettingsError("with storage postgres the members are kept in the database: drop peers (hosts join and leave by themselves)")
        }
        if leaseRenewInterval * 2 > leaseDuration {
            throw SettingsError("lease_renew_interval must be at most half of lease_duration, so that one late renewal does not lose the lease")
        }
        if advertise == nil, ["0.0.0.0", "::", ""].contains(listen.host) {
            throw SettingsError("listening on \(listen), other hosts and workers cannot tell this host's address: set advertise HOST:PORT")
        }
    }
}

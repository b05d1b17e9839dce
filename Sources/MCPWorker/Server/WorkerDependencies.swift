import CurlHTTP
import Foundation
import Greptile
import HTTPServing
import HashRing
import HostLink
import Logging
import Metrics
import ServerRuntime
import ServiceMetrics
import SessionClient
import SessionModel
import Settings
import SignIn

/// What every request of a worker shares.
final class WorkerDependencies: Sendable {
    let configuration: WorkerConfiguration
    let store: any SessionManager
    let sessions: TransportSessions
    let tools: GreptileTools
    let metrics: RouteMetrics
    let client: CurlClient
    let calls: CallSupervisor
    let journal: EventJournal
    let resources: ConversationResources
    let usage: UsageLedger
    let usageRecorder: UsageRecorder
    /// The client keys in force (reloaded from `api_keys_file` when it changes).
    let keys: ClientKeys
    /// Who a request comes from: the one place that decides.
    let authentication: Authentication
    /// Sign-in with the team's identity provider, when configured.
    let signIn: SignInService?
    let streamTiming: StreamTiming
    /// Tasks in the durable hosts, and what runs them here.
    let tasks: TaskStore
    let taskRunner: TaskRunner
    let logger: Logger
    /// Time, as every part of the worker reads it.
    let clock: ServerClock
    private let started: ServerClock.Instant

    /// The protocol revisions of the session-based transport, newest first.
    static let protocolVersions = ["2025-11-25", "2025-06-18", "2025-03-26"]

    init(
        configuration: WorkerConfiguration, store: any SessionManager, client: CurlClient, metrics: RouteMetrics, logger: Logger,
        clock: ServerClock = .system, streamTiming: StreamTiming? = nil
    ) {
        self.clock = clock
        started = clock.now
        self.streamTiming = streamTiming ?? StreamTiming(clock: clock)
        self.configuration = configuration
        self.store = store
        self.client = client
        self.metrics = metrics
        self.logger = logger
        journal = EventJournal(store: store, lifetime: configuration.sessionLifetime.secondsValue, logger: logger)
        sessions = TransportSessions(store: store, lifetime: configuration.sessionLifetime.secondsValue, clock: clock)
        calls = CallSupervisor(sessions: sessions)
        keys = ClientKeys(configuration.apiKeys)
        signIn = configuration.signIn.map { SignInService(configuration: $0, store: store, client: client, clock: clock, logger: logger) }
        authentication = Authentication(keys: keys, adminKey: configuration.adminKey, signIn: signIn)
        usage = UsageLedger(now: clock.wall)
        usageRecorder = UsageRecorder(ledger: usage, store: store, logger: logger)
        tools = GreptileTools(
            greptile: GreptileClient(configuration: configuration.upstream, client: client, clock: clock, logger: logger),
            github: GitHubClient(configuration: configuration.upstream, client: client, clock: clock, logger: logger),
            conversations: Conversations(
                store: store, window: configuration.historyWindow,
                catalog: ConversationCatalog(store: store, keys: keys), clock: clock),
            usage: usage, logger: logger, clock: clock)
        resources = ConversationResources(catalog: tools.conversations.catalog, pageSize: configuration.resourcePageSize)
        var policy = TaskPolicy()
        policy.defaultTTL = configuration.taskTTL
        policy.maxTTL = configuration.taskTTLMax
        policy.maxWorkingPerPrincipal = configuration.tasksPerPrincipal
        policy.lease = configuration.taskLease
        tasks = TaskStore(store: store, policy: policy, clock: clock)
        taskRunner = TaskRunner(
            tasks: tasks, tools: tools, supervisor: calls, runners: BackgroundCalls(), logger: logger, clock: clock,
            indexPollInterval: configuration.indexPollInterval)
        TaskRunner.declareMetrics()
        SignInService.declareMetrics()
    }

    /// Sets the gauges of the worker's state, read when `/metrics` is: the ring version it
    /// routes by, and the writes made in memory that still wait for their host.
    func recordGauges() async {
        let health = await store.health()
        Gauges.pendingWrites.record(health.pendingReplays)
        Gauges.ringVersion.record(ring.version)
    }

    private enum Gauges {
        static let pendingWrites = Gauge(label: "worker_fallback_writes_pending")
        static let ringVersion = Gauge(label: "worker_ring_version")
    }

    /// Whether a request's `Origin` may use the endpoint: absent, localhost, or configured.
    func allows(origin: String?) -> Bool {
        guard let origin else { return true }
        if configuration.allowedOrigins.contains(origin) { return true }
        guard let url = URL(string: origin), let host = url.host else { return false }
        return ["localhost", "127.0.0.1", "[::1]", "::1"].contains(host)
    }

    // MARK: Health

    struct Health: Encodable {
        struct Upstream: Encodable {
            var greptileBaseURL: String
            var githubBaseURL: String
            var problems: [String]

            enum CodingKeys: String, CodingKey {
                case problems
                case greptileBaseURL = "greptile_base_url"
                case githubBaseURL = "github_base_url"
            }
        }

        var status: String
        var version: String
        var uptimeSeconds: Double
        var sessions: SessionStoreHealth
        var hosts: [MemberHealth]
        var ring: RingInfo
        var upstream: Upstream
        var problems: [String]

        enum CodingKeys: String, CodingKey {
            case status, version, sessions, hosts, ring, upstream, problems
            case uptimeSeconds = "uptime_seconds"
        }
    }

    func health() async -> Health {
        let hosts = await withTaskGroup(of: (Int, MemberHealth).self) { group in
            for (index, host) in configuration.hosts.enumerated() {
                group.addTask { (index, await self.probe(host)) }
            }
            var results: [(Int, MemberHealth)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
        let sessionHealth = await store.health()
        var problems = configuration.upstream.problems
        for host in hosts {
            if let problem = host.problem(
                role: "host", reporter: "worker", ownVersion: ring.version, remedy: "give workers and hosts the same members and ring_version")
            {
                problems.append(problem)
            }
        }
        if let detail = sessionHealth.detail, sessionHealth.degraded { problems.append(detail) }
        let uptime = clock.elapsed(since: started)
        return Health(
            status: problems.isEmpty ? "ok" : "degraded",
            version: WorkerServer.version,
            uptimeSeconds: uptime.secondsValue,
            sessions: sessionHealth,
            hosts: hosts,
            ring: ring,
            upstream: .init(
                greptileBaseURL: configuration.upstream.greptileBaseURL, githubBaseURL: configuration.upstream.githubBaseURL,
                problems: configuration.upstream.problems),
            problems: problems)
    }

    /// The ring this worker routes by (empty in in-memory mode).
    var ring: RingInfo {
        RingInfo(node: nil, membership: store.ring ?? Membership(version: 0, members: []))
    }

    private func probe(_ host: NamedAddress) async -> MemberHealth {
        var probed = MemberHealth(name: host.name, address: "\(host.address)")
        let hosts = HostClient(curl: client, token: configuration.hostToken)
        do {
            let response = try await hosts.send(.health, to: "\(host.address)", timeout: .seconds(1))
            let health = JSONValue.parse(response.body)?.objectValue
            probed.status = health?["status"]?.stringValue
            if let membership = health?["membership"]?.objectValue {
                probed.database = membership["database"]?.stringValue
                probed.serving = membership["serving"]?.boolValue
                probed.liveHosts = membership["live_hosts"]?.numberValue.map { Int($0) }
                probed.leaseAgeSeconds = membership["lease_age_seconds"]?.numberValue
            }
            probed.reachable = response.status == 200
            probed.error = response.status == 200 ? nil : "HTTP \(response.status)"
        } catch {
            probed.error = "\(error)"
            return probed
        }
        let answer = await hosts.ring(at: "\(host.address)", timeout: .seconds(1))
        // A newer ring seen here is adopted here: the probe is as good a messenger as a 421.
        if case .success(let info) = answer { store.consider(info, from: host.name) }
        if case .success = answer { probed.record(answer, ours: ring) }
        return probed
    }
}

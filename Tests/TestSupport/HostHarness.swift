import CurlHTTP
import Foundation

/// One of our executables as a process that a test can restart: each start is a new
/// process with its own log file; `base` is where the newest one listens.
public final class ProductProcess: Sendable {
    public let product: String
    public let directory: TemporaryDirectory
    private let current = Mutexed<(process: ServiceProcess, base: String)?>(nil)
    private let starts = Mutexed(0)

    public init(product: String, directory: TemporaryDirectory) {
        self.product = product
        self.directory = directory
    }

    /// Starts a new process and waits until it listens; returns its base URL.
    @discardableResult
    public func start(arguments: [String], environment: [String: String]) async throws -> String {
        let attempt = starts.update {
            $0 += 1; return $0
        }
        let process = try ServiceProcess(
            executable: BuiltProducts.path(product), arguments: arguments, environment: environment,
            logPath: logPath(attempt))
        let base = try await process.waitForListening()
        current.set((process, base))
        return base
    }

    public var base: String { current.get()!.base }
    public var process: ServiceProcess { current.get()!.process }
    public var port: Int { Int(base.split(separator: ":").last!)! }

    /// Every log the processes wrote, oldest first.
    public var logs: String {
        (1...max(1, starts.get())).map { (try? String(contentsOfFile: logPath($0), encoding: .utf8)) ?? "" }.joined(separator: "\n")
    }

    public func stop() async {
        await current.get()?.process.stop()
    }

    private func logPath(_ attempt: Int) -> String {
        directory.file("\(product)-\(attempt).log")
    }
}

/// A `durable-host` process on a free loopback port, with its own data directory.
public final class HostHarness: Sendable {
    public let directory: TemporaryDirectory
    public let node: String
    public let extraArguments: [String]
    public let environment: [String: String]
    private let runner: ProductProcess

    /// The host that tests holding commits back run: `durable-host` plus `--commit-delay` and
    /// `--commit-gate` (Tests/DurableHostTesting).
    public static let holdingCommits = "durable-host-testing"

    /// `dataPath` puts the data elsewhere than in `directory` (where the logs go); `product` is
    /// `durable-host`, or `holdingCommits` for a test that holds commits back.
    public init(
        node: String = "host-1", arguments: [String] = [], environment: [String: String] = [:],
        directory: TemporaryDirectory = TemporaryDirectory("host"), dataPath: String? = nil, product: String = "durable-host"
    ) {
        self.node = node
        self.extraArguments = arguments
        self.environment = environment
        self.directory = directory
        self.dataPath = dataPath ?? directory.file("data")
        runner = ProductProcess(product: product, directory: directory)
    }

    public let dataPath: String

    /// Starts the host (on a new free port, or on `port`), returning its base URL.
    @discardableResult
    public func start(port: Int = 0) async throws -> String {
        try await runner.start(
            arguments: ["--listen", "127.0.0.1:\(port)", "--node", node, "--data", dataPath] + extraArguments, environment: environment)
    }

    public var base: String { runner.base }
    public var process: ServiceProcess { runner.process }
    public var port: Int { runner.port }
    public var logs: String { runner.logs }

    public func client(token: String? = nil) -> JSONClient {
        JSONClient(base: base, headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
    }

    public func stop() async {
        await runner.stop()
    }
}

/// A value behind a lock, for test plumbing.
public final class Mutexed<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()

    public init(_ value: Value) { self.value = value }

    public func get() -> Value { lock.withLock { value } }
    public func set(_ newValue: Value) { lock.withLock { value = newValue } }
    @discardableResult
    public func update<T>(_ body: (inout Value) throws -> T) rethrows -> T { try lock.withLock { try body(&value) } }
}

/// Where a test's hosts keep their sessions.
public enum StorageBackend: String, Sendable, CaseIterable {
    case sqlite
    case postgres
}

extension HostHarness {
    /// A host on the shared database of `cluster` (`--storage postgres`, the URL from the environment).
    public static func onDatabase(
        _ cluster: PostgresCluster, node: String = "host-1", arguments: [String] = [], environment: [String: String] = [:],
        product: String = "durable-host"
    ) -> HostHarness {
        HostHarness(
            node: node, arguments: ["--storage", "postgres"] + arguments,
            environment: environment.merging(["DURABLE_HOST_DATABASE_URL": cluster.url]) { $1 }, product: product)
    }

    /// A host on `backend`: its own SQLite file, or a new PostgreSQL cluster (returned, to be stopped).
    public static func make(
        _ backend: StorageBackend, node: String = "host-1", arguments: [String] = [], environment: [String: String] = [:],
        product: String = "durable-host"
    ) async throws -> (HostHarness, PostgresCluster?) {
        switch backend {
        case .sqlite:
            return (HostHarness(node: node, arguments: arguments, environment: environment, product: product), nil)
        case .postgres:
            let cluster = try await PostgresCluster.start()
            return (onDatabase(cluster, node: node, arguments: arguments, environment: environment, product: product), cluster)
        }
    }

    /// Starts the host and waits until it serves sessions (on a shared database: until it
    /// holds a lease and is a member of the ring).
    @discardableResult
    public func startServing(port: Int = 0) async throws -> String {
        let base = try await start(port: port)
        try await waitUntilServing()
        return base
    }

    public func waitUntilServing() async throws {
        try await eventually("\(node) serves sessions", timeout: .seconds(30)) {
            guard let health = try? await JSONClient(base: self.base).send(.get, "/health").object else { return false }
            guard let membership = health["membership"] as? [String: Any] else { return true }
            return membership["serving"] as? Bool == true
        }
    }
}

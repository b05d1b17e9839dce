import CurlHTTP
import Foundation

/// A `durable-host` process on a free loopback port, with its own data directory.
public final class HostHarness: Sendable {
    public let directory: TemporaryDirectory
    public let node: String
    public let extraArguments: [String]
    public let environment: [String: String]
    private let current: Mutexed<(process: ServiceProcess, base: String)?>
    private let starts = Mutexed(0)

    public init(node: String = "host-1", arguments: [String] = [], environment: [String: String] = [:], directory: TemporaryDirectory = TemporaryDirectory("host")) {
        self.node = node
        self.extraArguments = arguments
        self.environment = environment
        self.directory = directory
        current = Mutexed(nil)
    }

    public var dataPath: String { directory.file("data") }

    /// Starts the host (on a new free port, or on `port`), returning its base URL.
    @discardableResult
    public func start(port: Int = 0) async throws -> String {
        let attempt = starts.update { $0 += 1; return $0 }
        let process = try ServiceProcess(
            executable: BuiltProducts.path("durable-host"),
            arguments: ["--listen", "127.0.0.1:\(port)", "--node", node, "--data", dataPath] + extraArguments,
            environment: environment,
            logPath: directory.file("host-\(attempt).log"))
        let base = try await process.waitForListening()
        current.set((process, base))
        return base
    }

    public var base: String { current.get()!.base }
    public var process: ServiceProcess { current.get()!.process }
    public var port: Int { Int(base.split(separator: ":").last!)! }

    public func client(token: String? = nil) -> JSONClient {
        JSONClient(base: base, headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
    }

    public func stop() async {
        await current.get()?.process.stop()
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
    public func update<T>(_ body: (inout Value) -> T) -> T { lock.withLock { body(&value) } }
}

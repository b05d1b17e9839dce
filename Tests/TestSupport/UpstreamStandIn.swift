import CurlHTTP
import Foundation

/// The Python stand-in for Greptile and GitHub (Tests/Fixtures/upstream_standin.py), as a process.
public final class UpstreamStandIn: Sendable {
    public let process: ServiceProcess
    public let base: String
    private let directory: TemporaryDirectory

    public static var scriptPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/upstream_standin.py").path
    }

    private init(process: ServiceProcess, base: String, directory: TemporaryDirectory) {
        self.process = process
        self.base = base
        self.directory = directory
    }

    public static func start() async throws -> UpstreamStandIn {
        let directory = TemporaryDirectory("standin")
        let process = try ServiceProcess(
            executable: "/usr/bin/env", arguments: ["python3", "-u", scriptPath], logPath: directory.file("standin.log"))
        let base = try await process.waitForListening()
        return UpstreamStandIn(process: process, base: base, directory: directory)
    }

    public var client: JSONClient { JSONClient(base: base) }

    /// The repository tests ask about, indexed on its default branch.
    public static let indexedRepository = "github:main:acme/widgets"

    /// Starts the stand-in with `indexedRepository` already indexed.
    public static func startIndexed() async throws -> UpstreamStandIn {
        let standIn = try await start()
        try await standIn.control(["indexed": [indexedRepository]])
        return standIn
    }

    /// The credentials the stand-in accepts.
    public static let greptileKey = "standin-greptile-key"
    public static let githubToken = "standin-github-token"

    /// What a worker needs in its environment to call this stand-in as Greptile and GitHub.
    public var workerEnvironment: [String: String] {
        [
            "GREPTILE_BASE_URL": base + "/v2", "GITHUB_API_URL": base + "/github",
            "GREPTILE_API_KEY": Self.greptileKey, "GITHUB_TOKEN": Self.githubToken,
        ]
    }

    /// Requests received under `prefix` (e.g. "/v2/query"), oldest first.
    public func requests(to prefix: String) async throws -> [[String: Any]] {
        try await requests().filter { ($0["path"] as? String)?.hasPrefix(prefix) == true }
    }

    /// Sends a control command: `["fault": [...]]`, `["delay_ms": 200]`, `["reset": true]`.
    public func control(_ command: [String: Any]) async throws {
        let body = try JSONSerialization.data(withJSONObject: command)
        _ = try await client.send(.post, "/_control", body: body, headers: ["Content-Type": "application/json"])
    }

    /// Every request received (not control requests), oldest first.
    public func requests() async throws -> [[String: Any]] {
        let response = try await client.send(.get, "/_requests")
        return (try JSONSerialization.jsonObject(with: response.body) as? [[String: Any]]) ?? []
    }

    /// Disconnects noticed while streaming.
    public func events() async throws -> [[String: Any]] {
        let response = try await client.send(.get, "/_events")
        return (try JSONSerialization.jsonObject(with: response.body) as? [[String: Any]]) ?? []
    }

    /// The most requests answered at once so far, by first path segment ("/github", "/v2").
    public func maxInFlight() async throws -> [String: Int] {
        let response = try await client.send(.get, "/_concurrency")
        return (try JSONSerialization.jsonObject(with: response.body) as? [String: Int]) ?? [:]
    }

    /// When the stand-in saw a client leave a request to `path` after `after` (seconds since the epoch).
    /// How long to look is not what a test asserts: it compares the stand-in's own time of the
    /// disconnect with when the client left, so a loaded machine may take its time to show it.
    public func disconnect(from path: String, after: Double, timeout: Duration = .seconds(30)) async throws -> Double {
        try await eventually("the stand-in never saw a client leave \(path)", timeout: timeout) {
            try await events().first { ($0["path"] as? String)?.hasPrefix(path) == true && ($0["time"] as? Double ?? 0) > after }?["time"] as? Double
        }
    }

    /// TCP connections accepted so far.
    public func connections() async throws -> Int {
        try await client.send(.get, "/_connections").object["connections"] as? Int ?? -1
    }

    public func stop() async {
        await process.stop()
    }
}

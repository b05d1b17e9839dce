import CurlHTTP
import Foundation

/// An `mcp-worker` process on a free loopback port (or a chosen one), restartable.
public final class WorkerHarness: Sendable {
    public let directory: TemporaryDirectory
    public let arguments: [String]
    public let environment: [String: String]
    private let runner: ProductProcess

    /// `environment` typically comes from `UpstreamStandIn.workerEnvironment`.
    public init(arguments: [String] = [], environment: [String: String] = [:], directory: TemporaryDirectory = TemporaryDirectory("worker")) {
        self.arguments = arguments
        self.environment = environment
        self.directory = directory
        runner = ProductProcess(product: "mcp-worker", directory: directory)
    }

    /// Starts the worker with `--hosts` (when given) on `port` (0: a free one); returns its base URL.
    @discardableResult
    public func start(hosts: [String] = [], port: Int = 0) async throws -> String {
        var arguments = ["--listen", "127.0.0.1:\(port)"] + self.arguments
        if !hosts.isEmpty { arguments += ["--hosts", hosts.joined(separator: ",")] }
        return try await runner.start(arguments: arguments, environment: environment)
    }

    public var base: String { runner.base }
    public var process: ServiceProcess { runner.process }
    public var port: Int { runner.port }
    /// Every log this harness's processes wrote, oldest first.
    public var logs: String { runner.logs }

    public func stop() async {
        await runner.stop()
    }
}

/// A durable host's `--hosts` entry.
extension HostHarness {
    public var member: String { "\(node)=127.0.0.1:\(port)" }
}

/// Speaks MCP's Streamable HTTP to a worker with raw JSON-RPC, for tests of the transport rules.
public struct MCPTestClient: Sendable {
    public var base: String
    public var apiKey: String?
    public var sessionID: String?
    public var protocolVersion = "2025-11-25"
    public let http: JSONClient
    private let ids = Mutexed(0)

    public init(base: String, apiKey: String? = nil) {
        self.base = base
        self.apiKey = apiKey
        http = JSONClient(base: base)
    }

    /// Headers of a request in the current session.
    public func headers(extra: HTTPHeaders = [:]) -> HTTPHeaders {
        var headers: HTTPHeaders = ["Content-Type": "application/json", "Accept": "application/json, text/event-stream"]
        if let apiKey { headers.set("Authorization", "Bearer \(apiKey)") }
        if let sessionID {
            headers.set("MCP-Session-Id", sessionID)
            headers.set("MCP-Protocol-Version", protocolVersion)
        }
        for field in extra { headers.set(field.name, field.value) }
        return headers
    }

    /// POSTs a raw body to /mcp, to another worker when `via` is given.
    public func post(_ body: String, headers extra: HTTPHeaders = [:], via other: String? = nil) async throws -> HTTPResponse {
        let client = other.map { JSONClient(base: $0, curl: http.curl) } ?? http
        return try await client.send(.post, "/mcp", body: Data(body.utf8), headers: headers(extra: extra), timeout: .seconds(60))
    }

    /// Sends a JSON-RPC request and returns the whole reply object.
    public func request(_ method: String, _ params: [String: Any] = [:], via other: String? = nil) async throws -> [String: Any] {
        let id = ids.update {
            $0 += 1; return $0
        }
        let body = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": id, "method": method, "params": params])
        let response = try await post(String(decoding: body, as: UTF8.self), via: other)
        guard response.status == 200 else {
            throw ServiceProcess.Failure(description: "\(method): HTTP \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        return response.rpcReply
    }

    /// initialize + notifications/initialized; keeps the session id.
    public mutating func initialize(clientName: String = "swift-tests") async throws {
        sessionID = nil
        let body = try JSONSerialization.data(withJSONObject: [
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": ["protocolVersion": protocolVersion, "capabilities": [String: Any](), "clientInfo": ["name": clientName, "version": "1.0"]],
        ])
        let response = try await post(String(decoding: body, as: UTF8.self))
        guard response.status == 200, let id = response.headers["MCP-Session-Id"] else {
            throw ServiceProcess.Failure(description: "initialize: HTTP \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        sessionID = id
        // Later requests carry the revision the server chose.
        if let negotiated = (response.object["result"] as? [String: Any])?["protocolVersion"] as? String {
            protocolVersion = negotiated
        }
        let notified = try await post(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        guard notified.status == 202 else {
            throw ServiceProcess.Failure(description: "notifications/initialized: HTTP \(notified.status)")
        }
    }

    /// Calls a tool; returns `(isError, text, structuredContent)`.
    public func callTool(_ name: String, _ arguments: [String: Any], via other: String? = nil) async throws -> ToolResult {
        let reply = try await request("tools/call", ["name": name, "arguments": arguments], via: other)
        guard let result = reply["result"] as? [String: Any] else {
            throw ServiceProcess.Failure(description: "tools/call \(name): no result: \(reply)")
        }
        let text = ((result["content"] as? [[String: Any]]) ?? []).compactMap { $0["text"] as? String }.joined()
        return ToolResult(isError: result["isError"] as? Bool ?? false, text: text, structured: result["structuredContent"] as? [String: Any] ?? [:])
    }

    public struct ToolResult: @unchecked Sendable {
        public let isError: Bool
        public let text: String
        public let structured: [String: Any]
    }
}

extension HTTPResponse {
    /// The JSON-RPC response in the body: the body itself, or for an SSE answer the last
    /// event that is a response (progress notifications come before it).
    public var rpcReply: [String: Any] {
        guard headers["Content-Type"]?.hasPrefix("text/event-stream") == true else { return object }
        let text = String(decoding: body, as: UTF8.self)
        var reply: [String: Any] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("data: ") {
            if let message = (try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8))) as? [String: Any],
                message["result"] != nil || message["error"] != nil
            {
                reply = message
            }
        }
        return reply
    }
}

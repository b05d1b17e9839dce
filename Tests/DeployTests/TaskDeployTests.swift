import CurlHTTP
import Foundation
import TestSupport
import Testing

/// A request of the stateless revision opted into the tasks extension, to `base` (nginx or a worker).
private func taskRequest(_ base: String, _ method: String, _ params: [String: Any]) async throws -> [String: Any] {
    var params = params
    params["_meta"] = [
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": ["extensions": ["io.modelcontextprotocol/tasks": [String: Any]()]],
    ]
    var headers: HTTPHeaders = [
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method,
    ]
    if let name = (params["name"] ?? params["taskId"] ?? params["uri"]) as? String { headers.set("Mcp-Name", name) }
    let body = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": 1, "method": method, "params": params])
    let response = try await JSONClient(base: base).send(.post, "/mcp", body: body, headers: headers, timeout: .seconds(30))
    return response.object["result"] as? [String: Any] ?? response.object
}

/// The messages of conversation `session` as `resources/read` gives them through `front`.
private func conversationMessages(_ front: String, _ session: String) async throws -> [String] {
    let read = try await taskRequest(front, "resources/read", ["uri": "conversation://\(session)"])
    let contents = read["contents"] as? [[String: Any]] ?? []
    let json = contents.first { $0["mimeType"] as? String == "application/json" }?["text"] as? String ?? "{}"
    let record = (try JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] ?? [:]
    return (record["messages"] as? [[String: Any]] ?? []).compactMap { $0["content"] as? String }
}

@Suite("Tasks behind nginx: the runner killed (SQLite and PostgreSQL), the task's host killed (PostgreSQL)", .serialized)
struct TaskDeployTests {
    static var repository: [String: Any] { ["remote": "github", "repository": "acme/widgets", "branch": "main"] }

    @Test(
        "a task's runner killed with kill -9 mid-call: it completes on the other worker, read through nginx, its turn stored once",
        arguments: ["local", "staging"])
    func runnerKilled(config: String) async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        // worker-1's Greptile call is held until it is killed: it cannot be answered first on a
        // slow machine. The takeover's is answered at once.
        try await standIn.control(["fault": ["path_prefix": "/v2/query", "times": 1, "delay_ms": 120_000]])
        let stack = try await DeployStack.up(config, standIn: standIn, overrides: ["workers.tasks.lease=2"])
        let first = "http://127.0.0.1:\(stack.port("workers.first_port"))"
        let session = "nginx-kill-\(config)"
        let created = try await taskRequest(
            first, "tools/call", ["name": "query_repository", "arguments": ["query": "survive", "session_id": session, "repositories": [Self.repository]]])
        let id = try #require(created["taskId"] as? String, "\(created)")
        try await eventually("worker-1 asks Greptile") { try await standIn.requests(to: "/v2/query").count == 1 }
        kill(try #require(stack.pids["worker-1"]), SIGKILL)
        let ended = try await eventually("the task completes elsewhere", timeout: .seconds(60), every: .milliseconds(250)) {
            let task = try await taskRequest(stack.front, "tasks/get", ["taskId": id])
            return task["status"] as? String == "working" ? nil : task
        }
        #expect(ended["status"] as? String == "completed", "\(ended)")
        let answer = ((ended["result"] as? [String: Any])?["structuredContent"] as? [String: Any])?["message"] as? String
        #expect(try await conversationMessages(stack.front, session) == ["survive", answer ?? "?"])
        await stack.down()
        await standIn.stop()
    }

    @Test("the host that owns a task killed with kill -9 under PostgreSQL: another host serves it, and the task completes")
    func hostKilled() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        try await standIn.control(["delay_ms": 3_000])
        let stack = try await DeployStack.up("staging", standIn: standIn, overrides: ["workers.tasks.lease=2"])
        let created = try await taskRequest(
            stack.front, "tools/call",
            ["name": "query_repository", "arguments": ["query": "survive the host", "session_id": "host-kill", "repositories": [Self.repository]]])
        let id = try #require(created["taskId"] as? String, "\(created)")
        // The owner of the task's record, as any host names it (421 with Ring-Owner from the others).
        let hostBase = "http://127.0.0.1:\(stack.port("hosts.first_port"))"
        let probe = try await JSONClient(base: hostBase).send(.get, "/sessions/task:\(id)")
        let owner = probe.status == 421 ? try #require(probe.headers["Ring-Owner"]) : "host-1"
        kill(try #require(stack.pids[owner]), SIGKILL)
        let ended = try await eventually("the task completes", timeout: .seconds(90), every: .milliseconds(250)) {
            let task = try? await taskRequest(stack.front, "tasks/get", ["taskId": id])
            return task?["status"] as? String == "working" || task?["status"] == nil ? nil : task
        }
        #expect(ended["status"] as? String == "completed", "\(ended)")
        let answer = ((ended["result"] as? [String: Any])?["structuredContent"] as? [String: Any])?["message"] as? String
        #expect(try await conversationMessages(stack.front, "host-kill") == ["survive the host", answer ?? "?"])
        await stack.down()
        await standIn.stop()
    }
}

extension DeployStack {
    /// A port the stack was brought up with (`workers.first_port`, `hosts.first_port`).
    func port(_ key: String) -> Int {
        settings.first { $0.hasPrefix(key + "=") }.flatMap { Int($0.dropFirst(key.count + 1)) } ?? 0
    }
}

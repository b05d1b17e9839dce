import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

@Suite("mcp-worker: faults of hosts and upstream services, with real processes and signals")
struct FaultTests {
    @Test("host down: each attempt is retried and logged, then the call is answered from memory; writes reach the host when it is back")
    func hostDown() async throws {
        let stack = try await WorkerStack.start(workerArguments: ["--host-timeout", "0.5"])
        let client = try await stack.session()
        let turn1 = try await client.callTool("query_repository", ["query": "before", "repositories": [WorkerStack.repository], "session_id": "outage"])
        #expect(!turn1.isError)
        let host = try #require(stack.host)
        let port = host.port
        host.process.signal(SIGKILL)
        try await host.process.waitForExit()

        // The same MCP session and conversation go on while the host is gone.
        let turn2 = try await client.callTool("query_repository", ["query": "during", "repositories": [WorkerStack.repository], "session_id": "outage"])
        #expect(!turn2.isError, "\(turn2.text)")
        #expect((turn2.structured["message"] as? String)?.contains("after 1 earlier questions") == true, "the fallback starts from the last known history")
        let logs = stack.worker.logs
        #expect(logs.contains("host attempt 1/3 failed; retrying"))
        #expect(logs.contains("host attempt 2/3 failed; retrying"))
        #expect(logs.contains("session served from memory"))
        let http = JSONClient(base: stack.worker.base)
        let health = try await http.send(.get, "/health").object
        #expect(health["status"] as? String == "degraded")
        #expect((health["sessions"] as? [String: Any])?["degraded"] as? Bool == true)
        #expect(((health["hosts"] as? [[String: Any]])?.first?["reachable"]) as? Bool == false)
        let metrics = String(decoding: try await http.send(.get, "/metrics").body, as: UTF8.self)
        #expect((metric(metrics, "worker_session_fallbacks_total") ?? 0) >= 1)
        #expect((metric(metrics, "worker_host_failed_attempts_total") ?? 0) >= 2)

        // The host comes back on its port with its data: the journaled turns are replayed, in order.
        try await host.start(port: port)
        let stored = try await eventually("the journaled turn reached the host", timeout: .seconds(30)) {
            let messages = try? await host.client().send(.get, "/sessions/conv:local:outage/history").decode(HostAPI.History.self).data
            return messages?.count == 4 ? messages : nil
        }
        #expect(stored.map(\.role) == [.user, .assistant, .user, .assistant])
        #expect(stored.map(\.content).first == "before")
        #expect(try stored.at(2).content == "during")
        #expect(try stored.at(3).content == turn2.structured["message"] as? String, "the answer given from memory is the one stored")
        #expect(try await http.send(.get, "/health").object["status"] as? String != nil)
        await stack.stop()
    }

    @Test("host stopped (SIGSTOP): attempts time out instead of hanging, and the call is answered")
    func hostHangs() async throws {
        let stack = try await WorkerStack.start(workerArguments: ["--host-timeout", "0.3"])
        let client = try await stack.session()
        let host = try #require(stack.host)
        host.process.signal(SIGSTOP)
        defer { host.process.signal(SIGCONT) }
        let result = try await client.callTool("query_repository", ["query": "frozen", "repositories": [WorkerStack.repository], "session_id": "frozen"])
        #expect(!result.isError, "\(result.text)")
        #expect(stack.worker.logs.contains("timed out") || stack.worker.logs.contains("timeout"), "\(stack.worker.logs)")
        host.process.signal(SIGCONT)
        await stack.stop()
    }

    @Test("Greptile 503 twice then fine: retried and answered; 5xx every time: a clear isError after 3 attempts")
    func upstreamServerErrors() async throws {
        let stack = try await WorkerStack.start()
        let client = try await stack.session()
        try await stack.standIn.control(["fault": ["path_prefix": "/v2/query", "status": 503, "times": 2]])
        let recovered = try await client.callTool("query_repository", ["query": "flaky", "repositories": [WorkerStack.repository]])
        #expect(!recovered.isError, "\(recovered.text)")
        #expect(try await stack.standIn.requests(to: "/v2/query").count == 3)

        try await stack.standIn.control(["reset": true, "indexed": [WorkerStack.indexedKey]])
        try await stack.standIn.control(["fault": ["path_prefix": "/v2/search", "status": 502, "times": 10]])
        let failed = try await client.callTool("search_repository", ["query": "down", "repositories": [WorkerStack.repository]])
        #expect(failed.isError)
        #expect(failed.text.contains("Greptile"), "\(failed.text)")
        #expect(failed.text.contains("502"), "\(failed.text)")
        #expect(try await stack.standIn.requests(to: "/v2/search").count == 3)
        await stack.stop()
    }

    @Test("Greptile 429 with Retry-After: the worker waits as told, then succeeds")
    func upstreamThrottling() async throws {
        let stack = try await WorkerStack.start()
        let client = try await stack.session()
        try await stack.standIn.control(["fault": ["path_prefix": "/v2/repositories/", "status": 429, "times": 1, "retry_after": 1]])
        let result = try await client.callTool("get_repository_info", ["remote": "github", "repository": "acme/widgets", "branch": "main"])
        #expect(!result.isError, "\(result.text)")
        let attempts = try await stack.standIn.requests(to: "/v2/repositories/")
        #expect(attempts.count == 2)
        let gap = ((try attempts.at(1)["time"] as? Double) ?? 0) - ((try attempts.at(0)["time"] as? Double) ?? 0)
        #expect(gap >= 0.9, "Retry-After: 1 must be honoured (waited \(gap) s)")
        await stack.stop()
    }

    @Test("a rejected key, an unknown repository, a slow Greptile and a slow stream are isError results a person can act on")
    func upstreamRefusals() async throws {
        let stack = try await WorkerStack.start(workerArguments: ["--query-timeout", "1"])
        let client = try await stack.session()
        let missing = try await client.callTool("get_repository_info", ["remote": "github", "repository": "octo/empty"])
        #expect(missing.isError)
        #expect(missing.text.contains("repository not found or not indexed"), "\(missing.text)")

        try await stack.standIn.control(["delay_ms": 3000])
        let slow = try await client.callTool(
            "query_repository",
            ["query": "slow", "session_id": "unanswered", "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]]])
        #expect(slow.isError)
        #expect(slow.text.lowercased().contains("time"), "\(slow.text)")
        let unanswered = try await stack.host!.client().send(.get, "/sessions/conv:local:unanswered/history").decode(HostAPI.History.self)
        #expect(unanswered.data.isEmpty, "a failed query leaves no unanswered question in the conversation")
        try await stack.standIn.control(["delay_ms": 0, "chunk_interval_ms": 400])
        let slowStream = try await client.callTool(
            "query_repository",
            ["query": "slow stream", "stream": true, "timeout": 1, "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]]])
        #expect(slowStream.isError)
        #expect(slowStream.text.contains("did not finish within"), "\(slowStream.text)")
        try await stack.standIn.control(["chunk_interval_ms": 0])

        let wrongKey = WorkerHarness(environment: stack.standIn.workerEnvironment.merging(["GREPTILE_API_KEY": "not-the-key"]) { $1 })
        try await wrongKey.start(hosts: [stack.host!.member])
        let other = try await {
            var client = MCPTestClient(base: wrongKey.base)
            try await client.initialize()
            return client
        }()
        let rejected = try await other.callTool(
            "query_repository", ["query": "x", "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]]])
        #expect(rejected.isError)
        #expect(rejected.text.contains("GREPTILE_API_KEY was rejected"), "\(rejected.text)")
        #expect(!wrongKey.logs.contains("not-the-key"))
        await wrongKey.stop()
        await stack.stop()
    }

    @Test("SIGTERM: the worker finishes the call in flight, then exits 0")
    func gracefulShutdown() async throws {
        let stack = try await WorkerStack.start()
        let client = try await stack.session()
        try await stack.standIn.control(["delay_ms": 1500])
        async let answer = client.callTool(
            "query_repository", ["query": "in flight", "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]]])
        try await eventually("the call is in flight at Greptile") { try await stack.standIn.requests(to: "/v2/query").count == 1 }
        stack.worker.process.signal(SIGTERM)
        let result = try await answer
        #expect(!result.isError, "\(result.text)")
        #expect(try await stack.worker.process.waitForExit(timeout: .seconds(30)) == 0)
        #expect(stack.worker.logs.contains("stopped"))
        await stack.stop()
    }
}

import CurlHTTP
import Foundation
import TestSupport
import Testing

@Suite("mcp-worker: the Streamable HTTP transport rules, authentication and configuration")
struct TransportTests {
    @Test("malformed JSON-RPC, wrong headers, methods and bodies get the transport's status codes and JSON-RPC errors")
    func badRequests() async throws {
        let stack = try await WorkerStack.start(workerArguments: ["--max-body-bytes", "4096"])
        var client = try await stack.session()

        func check(_ body: String, headers: HTTPHeaders = [:], status: Int, code: Int?, _ comment: Comment) async throws {
            let response = try await client.post(body, headers: headers)
            #expect(response.status == status, comment)
            if let code {
                #expect(response.rpcError?.code == code, "\(comment): \(response.text)")
                #expect(response.object["jsonrpc"] as? String == "2.0")
            }
        }
        // Every rule, row by row, runs in process (MCPWorkerTests, TransportRulesTests); a few
        // of them here, end to end through a real process and socket.
        try await check("{not json", status: 400, code: -32700, "invalid JSON")
        try await check(
            #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm_rf","arguments":{}}}"#, status: 200, code: -32602, "an unknown tool")
        try await check(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["Content-Type": "text/plain"], status: 415, code: -32600, "a text body")
        try await check(
            #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["Origin": "https://evil.example"], status: 403, code: -32600, "a foreign Origin")
        let padding = String(repeating: "x", count: 8000)
        try await check(#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"\#(padding)"}}"#, status: 413, code: -32600, "an oversize body")

        // Tool arguments of the wrong shape are tool errors the model can act on.
        let wrong = try await client.callTool("query_repository", ["query": 42, "repositories": [WorkerStack.repository]])
        #expect(wrong.isError)
        #expect(wrong.text.contains("query"))
        let noRepositories = try await client.callTool("query_repository", ["query": "x", "repositories": []])
        #expect(noRepositories.isError)
        let badID = try await client.callTool("query_repository", ["query": "x", "repositories": [WorkerStack.repository], "session_id": "../../etc"])
        #expect(badID.isError)
        #expect(badID.text.contains("session_id"))
        #expect(try await stack.standIn.requests(to: "/v2/query").isEmpty, "no bad call reaches Greptile")

        // Without a session: 400; with an unknown one: 404; GET: 405.
        let sessionID = client.sessionID
        client.sessionID = nil
        try await check(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, status: 400, code: -32600, "no MCP-Session-Id")
        client.sessionID = String(repeating: "ab", count: 16)
        try await check(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, status: 404, code: -32001, "an unknown session")
        // A tool call's session is checked beside its first read, but nothing is asked or kept.
        let upstreamBefore = try await stack.standIn.requests().count
        let ghostQuery =
            #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query_repository","arguments":{"query":"q","repositories":[{"remote":"github","repository":"acme/widgets"}],"session_id":"ghost"}}}"#
        try await check(ghostQuery, status: 404, code: -32001, "a query in an unknown session")
        let ghostInfo =
            #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_repository_info","arguments":{"remote":"github","repository":"acme/widgets"}}}"#
        try await check(ghostInfo, status: 404, code: -32001, "a call in an unknown session")
        #expect(try await stack.standIn.requests().count == upstreamBefore, "nothing reaches Greptile")
        #expect(try await stack.host!.client().send(.get, "/sessions/conv:local:ghost").errorCode == "session_not_found")
        client.sessionID = "not-even-hex"
        try await check(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, status: 404, code: -32001, "a malformed session id")
        client.sessionID = sessionID
        let get = try await client.http.send(.get, "/mcp", headers: client.headers())
        #expect(get.status == 405)
        #expect(get.headers["Allow"] == "POST, DELETE")
        #expect(try await client.http.send(.get, "/nowhere").status == 404)

        // The worker is still fine, and DELETE ends the session for good.
        #expect(try await client.request("ping")["result"] != nil)
        let deleted = try await client.http.send(.delete, "/mcp", headers: client.headers())
        #expect(deleted.status == 204)
        try await check(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, status: 404, code: -32001, "an ended session")
        #expect(try await client.http.send(.delete, "/mcp", headers: client.headers()).status == 404)
        #expect(stack.worker.process.exitStatus == nil)
        await stack.stop()
    }

    @Test("older revisions are accepted, an unknown one is answered with ours, notifications get 202")
    func protocolRevisions() async throws {
        let stack = try await WorkerStack.start()
        for (asked, expected) in [("2025-06-18", "2025-06-18"), ("2025-03-26", "2025-03-26"), ("2024-11-05", "2025-11-25")] {
            var client = MCPTestClient(base: stack.worker.base)
            client.protocolVersion = asked
            try await client.initialize()
            let reply = try await client.request("ping")
            #expect(reply["result"] != nil)
            let sessionID = try #require(client.sessionID)
            let record = try await stack.host!.client().send(.get, "/sessions/mcp-\(sessionID)").object
            let metadata = (record["data"] as? [String: Any])?["metadata"] as? [String: Any]
            #expect(metadata?["protocol_version"] as? String == expected, "asked \(asked)")
            #expect(metadata?["initialized"] as? Bool == true)
        }
        await stack.stop()
    }

    @Test("keys: none or a wrong one is 401; a session and its conversations are invisible to another key")
    func authenticationAndIsolation() async throws {
        let alice = "alice-key-0123456789abcdef"
        let bob = "bob-key-0123456789abcdef"
        let stack = try await WorkerStack.start(workerEnvironment: ["MCP_WORKER_API_KEYS": "alice:\(alice),bob:\(bob)"])

        var anonymous = MCPTestClient(base: stack.worker.base)
        await #expect(throws: (any Error).self) { try await anonymous.initialize() }
        let refused = try await anonymous.post(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        #expect(refused.status == 401)
        #expect(refused.headers["WWW-Authenticate"]?.hasPrefix("Bearer") == true)
        let wrong = try await MCPTestClient(base: stack.worker.base, apiKey: "alice-key-0123456789abcdeX")
            .post(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        #expect(wrong.status == 401)

        let aliceClient = try await stack.session(apiKey: alice)
        let asked = try await aliceClient.callTool(
            "query_repository", ["query": "secret plans", "repositories": [WorkerStack.repository], "session_id": "shared-name"])
        #expect(!asked.isError)

        // Bob presents Alice's session id: not found, and it stays Alice's.
        var bobOnAlice = aliceClient
        bobOnAlice.apiKey = bob
        #expect(try await bobOnAlice.post(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).status == 404)
        #expect(try await bobOnAlice.http.send(.delete, "/mcp", headers: bobOnAlice.headers()).status == 404)
        #expect(try await aliceClient.request("ping")["result"] != nil)

        // Bob's conversation of the same name is his own: Greptile sees none of Alice's turns.
        let bobClient = try await stack.session(apiKey: bob)
        _ = try await bobClient.callTool("query_repository", ["query": "my question", "repositories": [WorkerStack.repository], "session_id": "shared-name"])
        let last = try #require(try await stack.standIn.requests(to: "/v2/query").last)
        #expect(WorkerStack.turns(last) == ["user: my question"])
        let hostClient = stack.host!.client()
        #expect(try await hostClient.send(.get, "/sessions/conv:alice:shared-name/history").object["data"].map { ($0 as? [Any])?.count } == 2)
        #expect(try await hostClient.send(.get, "/sessions/conv:bob:shared-name/history").object["data"].map { ($0 as? [Any])?.count } == 2)

        // Logs name principals, never keys or upstream secrets.
        let logs = stack.worker.logs
        #expect(logs.contains("alice"))
        for secret in [alice, bob, UpstreamStandIn.greptileKey, UpstreamStandIn.githubToken] {
            #expect(!logs.contains(secret))
        }
        await stack.stop()
    }

    @Test("configuration mistakes stop the worker at start with a sentence that names the fix")
    func configurationErrors() async throws {
        let directory = TemporaryDirectory("worker-config")
        let keysFile = directory.file("keys")
        try "# principals\nops:short\n".write(toFile: keysFile, atomically: true, encoding: .utf8)
        let config = directory.file("config.json")
        try #"{"listen": "127.0.0.1:0", "histroy_window": 5}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let cases: [([String], [String: String], String)] = [
            (["--listen", "0.0.0.0:0"], [:], "refusing to listen on 0.0.0.0:0 without API keys"),
            (["--hosts", "127.0.0.1:7400"], [:], "NAME=HOST:PORT"),
            (["--history-window", "0"], [:], "history-window"),
            (["--api-keys-file", keysFile], [:], "at least 16 characters"),
            ([], ["MCP_WORKER_API_KEYS": "no-colon-here-0123456789"], "NAME:KEY"),
            (["--config", config], [:], "histroy_window"),
            ([], ["GREPTILE_BASE_URL": "api.greptile.com"], "GREPTILE_BASE_URL must be an http"),
        ]
        for (index, (arguments, environment, expected)) in cases.enumerated() {
            let process = try ServiceProcess(
                executable: BuiltProducts.path("mcp-worker"), arguments: arguments, environment: environment,
                logPath: directory.file("case-\(index).log"))
            #expect(try await process.waitForExit(timeout: .seconds(30)) == 2, "\(arguments)")
            #expect(process.log.contains(expected), "\(arguments): \(process.log)")
        }
    }

    @Test("every limit, set by config file or environment, is the one the worker applies: at the limit accepted, one past it refused")
    func limitsThroughTheProcess() async throws {
        let directory = TemporaryDirectory("worker-limits")
        let config = directory.file("worker.json")
        try #"{"history_window": 2, "max_body_bytes": 2048}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let stack = try await WorkerStack.start(
            workerArguments: ["--config", config], workerEnvironment: ["MCP_WORKER_QUERY_TIMEOUT": "1", "MCP_WORKER_REQUEST_READ_TIMEOUT": "1"])
        let client = try await stack.session()

        // history_window (config file): the newest 2 messages go upstream, the question last.
        for question in ["q1", "q2"] {
            let result = try await client.callTool("query_repository", ["query": question, "repositories": [WorkerStack.repository], "session_id": "window"])
            #expect(!result.isError, "\(result.text)")
        }
        let sent = WorkerStack.turns(try #require(try await stack.standIn.requests(to: "/v2/query").last))
        #expect(sent.count == 2 && sent.last == "user: q2", "\(sent)")

        // max_body_bytes (config file): 2,048 bytes.
        let ping = { (size: Int) in
            let bare = #"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":""}}"#
            return #"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":""# + String(repeating: "x", count: size - bare.utf8.count) + #""}}"#
        }
        #expect(try await client.post(ping(2048)).status == 200)
        let tooBig = try await client.post(ping(2049))
        #expect(tooBig.status == 413, "\(tooBig.text)")

        // query_timeout (environment): 1 s; Greptile answering after 3 s is a timeout.
        try await stack.standIn.control(["delay_ms": 3000])
        let slow = try await client.callTool("query_repository", ["query": "slow", "repositories": [WorkerStack.repository], "session_id": "slow"])
        try await stack.standIn.control(["delay_ms": 0])
        #expect(slow.isError && slow.text.lowercased().contains("time"), "\(slow.text)")

        // request_read_timeout (environment): 1 s. One byte every 200 ms would take 40 s to
        // arrive; the worker closes the connection after about 5 (slack for a loaded machine).
        let closedAfter = try await SlowConnection.headerBytesBeforeCutOff(port: stack.worker.port)
        let sentBytes = try #require(closedAfter, "the worker never closed the slow connection")
        #expect(sentBytes < 60, "the connection stayed open for \(sentBytes) bytes")
        await stack.stop()
    }

    @Test("mcp-worker check: secrets missing or rejected, hosts unreachable, ring disagreement, each with its fix")
    func check() async throws {
        let stack = try await WorkerStack.start(workers: 0)
        let host = try #require(stack.host)
        let directory = TemporaryDirectory("check")
        func run(_ arguments: [String], _ environment: [String: String]) async throws -> (Int32, String) {
            let process = try ServiceProcess(
                executable: BuiltProducts.path("mcp-worker"), arguments: ["check"] + arguments, environment: environment,
                logPath: directory.file("check-\(UUID().uuidString.prefix(6)).log"))
            return (try await process.waitForExit(timeout: .seconds(60)), process.log)
        }
        let good = try await run(["--hosts", host.member], stack.standIn.workerEnvironment)
        #expect(good.0 == 0, "\(good.1)")
        #expect(good.1.contains("ok      GREPTILE_API_KEY: accepted"))
        #expect(good.1.contains("ok      GITHUB_TOKEN: accepted"))
        #expect(good.1.contains("ring version 1 agreed"))
        #expect(good.1.contains("check: all good"))

        var wrong = stack.standIn.workerEnvironment
        wrong["GREPTILE_API_KEY"] = "not-the-key"
        wrong["GITHUB_TOKEN"] = nil
        let bad = try await run(["--hosts", "\(host.member),host-9=127.0.0.1:1", "--ring-version", "1"], wrong.merging(["GITHUB_TOKEN": ""]) { $1 })
        #expect(bad.0 == 1)
        #expect(bad.1.contains("problem GITHUB_TOKEN: not set"), "\(bad.1)")
        #expect(bad.1.contains("problem host host-9 (127.0.0.1:1): unreachable"), "\(bad.1)")
        #expect(bad.1.contains("with other members than ours"), "a ring of two members is not the host's ring of one: \(bad.1)")
        #expect(!bad.1.contains("not-the-key"))

        var rejected = stack.standIn.workerEnvironment
        rejected["GREPTILE_API_KEY"] = "not-the-key"
        let refused = try await run([], rejected)
        #expect(refused.0 == 1)
        #expect(refused.1.contains("problem GREPTILE_API_KEY: rejected by Greptile"), "\(refused.1)")
        await stack.stop()
    }

    @Test("/health reports the hosts and missing secrets; /metrics counts requests and tool calls")
    func healthAndMetrics() async throws {
        let stack = try await WorkerStack.start(workerEnvironment: ["GITHUB_TOKEN": ""])
        let client = try await stack.session()
        let failed = try await client.callTool("get_repository_info", WorkerStack.repository)
        #expect(failed.isError)
        #expect(failed.text.contains("GITHUB_TOKEN is not set"))
        let http = JSONClient(base: stack.worker.base)
        let health = try await http.send(.get, "/health").object
        #expect(health["status"] as? String == "degraded")
        #expect((health["problems"] as? [String])?.contains { $0.contains("GITHUB_TOKEN") } == true)
        let hosts = health["hosts"] as? [[String: Any]]
        #expect(hosts?.first?["reachable"] as? Bool == true)
        #expect(hosts?.first?["name"] as? String == "host-1")
        let metrics = String(decoding: try await http.send(.get, "/metrics").body, as: UTF8.self)
        #expect((metric(metrics, "worker_tool_calls_total", labels: #"tool="get_repository_info""#) ?? 0) >= 1)
        #expect((metric(metrics, "worker_requests_total", labels: #"route="/mcp""#) ?? 0) >= 3)
        #expect(stack.worker.logs.contains("GITHUB_TOKEN is not set"))
        await stack.stop()
    }
}

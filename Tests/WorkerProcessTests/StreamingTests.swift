import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

/// A streamed `tools/call` of `query_repository`, as raw HTTP, for the tests of this file.
func streamedQuery(base: String, client: MCPTestClient?, id: Int, query: String, conversation: String, modern: Bool) -> HTTPRequest {
    var params: [String: Any] = [
        "name": "query_repository",
        "arguments": [
            "query": query, "stream": true, "session_id": conversation, "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]],
        ],
    ]
    var headers: HTTPHeaders = ["Content-Type": "application/json", "Accept": "application/json, text/event-stream"]
    if modern {
        params["_meta"] = [
            "progressToken": "p\(id)", "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": [String: Any](),
        ]
        headers.set("MCP-Protocol-Version", "2026-07-28")
        headers.set("Mcp-Method", "tools/call")
        headers.set("Mcp-Name", "query_repository")
    } else if let client {
        params["_meta"] = ["progressToken": "p\(id)"]
        headers = client.headers()
    }
    let body = try! JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params])
    return HTTPRequest(method: .post, url: base + "/mcp", headers: headers, body: body, timeout: nil)
}

@Suite("MCP 2026-07-28 beside 2025-11-25, streamed answers, cancellation, resumption")
struct StreamingTests {
    @Test("the official Python SDK in auto, pinned 2026-07-28 and legacy modes: tools, conversations, streamed progress")
    func sdkModes() async throws {
        let stack = try await WorkerStack.start()
        try await stack.standIn.control(["chunk_interval_ms": 30])
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Interop/mcp_modes.py").path
        for (mode, expected) in [("auto", "2026-07-28"), ("2026-07-28", "2026-07-28"), ("legacy", "2025-11-25")] {
            let directory = TemporaryDirectory("modes")
            let python = try ServiceProcess(
                executable: "/usr/bin/env",
                arguments: ["python3", "-u", script, "--worker", stack.worker.base, "--mode", mode, "--conversation", "modes-\(mode)", "--stream"],
                logPath: directory.file("modes.log"))
            #expect(try await python.waitForExit(timeout: .seconds(120)) == 0, "\(mode): \(python.log)")
            let report = (try? JSONSerialization.jsonObject(with: Data((python.log.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
            #expect(report["ok"] as? Bool == true, "\(mode): \(python.log)")
            #expect(report["protocol_version"] as? String == expected, "\(mode)")
            let progress = report["progress"] as? [String] ?? []
            let whole = report["second_message"] as? String ?? ""
            #expect(progress.count >= 5, "\(mode): progress before the result: \(progress)")
            #expect(progress.last == whole, "\(mode): the last progress is the whole answer")
            let stored = try await stack.host!.client().send(.get, "/sessions/conv:local:modes-\(mode)/history").decode(HostAPI.History.self)
            #expect(stored.data.last?.content == whole, "\(mode): the stored assistant turn is the whole answer")
            #expect(stored.data.map(\.role) == [.user, .assistant, .user, .assistant], "\(mode)")
            #expect(stored.data.map(\.content) == ["first question", report["first_message"] as? String ?? "?", "second question", whole], "\(mode)")
        }
        await stack.stop()
    }

    @Test("2026-07-28 header rules and codes; GET and DELETE 405; server/discover; sessions of the older revision unaffected")
    func modernRules() async throws {
        let stack = try await WorkerStack.start()
        let http = JSONClient(base: stack.worker.base)
        func post(
            _ method: String, params: [String: Any], version: String = "2026-07-28", meta: String? = "2026-07-28", methodHeader: String? = nil,
            name: String? = nil
        ) async throws -> HTTPResponse {
            var params = params
            if let meta {
                params["_meta"] = ["io.modelcontextprotocol/protocolVersion": meta, "io.modelcontextprotocol/clientCapabilities": [String: Any]()]
            }
            let body = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": 1, "method": method, "params": params])
            var headers: HTTPHeaders = [
                "Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": version,
                "Mcp-Method": methodHeader ?? method,
            ]
            if let name { headers.set("Mcp-Name", name) }
            return try await http.send(.post, "/mcp", body: body, headers: headers)
        }
        let discover = try await post("server/discover", params: [:])
        #expect(discover.status == 200)
        let result = discover.object["result"] as? [String: Any]
        #expect((result?["supportedVersions"] as? [String])?.contains("2026-07-28") == true)
        #expect((result?["supportedVersions"] as? [String])?.contains("2025-11-25") == true)
        #expect(result?["resultType"] as? String == "complete")
        let listed = try await post("tools/list", params: [:])
        #expect(((listed.object["result"] as? [String: Any])?["tools"] as? [Any])?.count == 7)

        let noMeta = try await post("tools/list", params: [:], meta: nil)
        #expect(noMeta.status == 400)
        #expect(noMeta.rpcError?.code == -32602)
        let versionMismatch = try await post("tools/list", params: [:], version: "2026-07-28", meta: "2025-11-25")
        #expect(versionMismatch.status == 400)
        #expect(versionMismatch.rpcError?.code == -32020)
        let methodMismatch = try await post("tools/list", params: [:], methodHeader: "tools/call")
        #expect(methodMismatch.rpcError?.code == -32020)
        let nameMismatch = try await post("tools/call", params: ["name": "search_repository", "arguments": [String: Any]()], name: "query_repository")
        #expect(nameMismatch.status == 400)
        #expect(nameMismatch.rpcError?.code == -32020)
        let unsupported = try await post("tools/list", params: [:], version: "2099-01-01", meta: "2099-01-01")
        #expect(unsupported.status == 400)
        #expect(unsupported.rpcError?.code == -32022)
        let data = (unsupported.object["error"] as? [String: Any])?["data"] as? [String: Any]
        #expect((data?["supported"] as? [String])?.first == "2026-07-28")
        let unknown = try await post("prompts/list", params: [:])
        #expect(unknown.status == 404)
        #expect(unknown.rpcError?.code == -32601)
        let ping = try await post("ping", params: [:])
        #expect(ping.status == 404, "ping is gone in 2026-07-28")
        for method in [HTTPRequest.Method.get, .delete] {
            let response = try await http.send(method, "/mcp", headers: ["MCP-Protocol-Version": "2026-07-28"])
            #expect(response.status == 405)
        }

        // Meanwhile a session of the older revision works as before.
        let legacy = try await stack.session()
        #expect(try await legacy.request("ping")["result"] != nil)
        await stack.stop()
    }

    @Test("a stream dropped mid-answer is resumed through another worker with Last-Event-ID: the rest arrives, nothing twice, and the answer is stored")
    func resumeThroughAnotherWorker() async throws {
        let stack = try await WorkerStack.start(workers: 2)
        try await stack.standIn.control(["chunk_interval_ms": 150])
        let client = try await stack.session()
        let curl = CurlClient()
        defer { curl.shutdown() }

        var firstPart: [ServerSentEvent] = []
        let response = try await curl.stream(
            streamedQuery(base: stack.worker.base, client: client, id: 41, query: "resume me", conversation: "resumed", modern: false))
        #expect(response.headers["Content-Type"] == "text/event-stream")
        for try await event in response.body.serverSentEvents {
            firstPart.append(event)
            if firstPart.count == 4 { break }
        }
        // The client went away; the call goes on. Resume on the other worker.
        let lastID = try #require(firstPart.last?.id)
        var headers = client.headers()
        headers.set("Last-Event-ID", lastID)
        let resumed = try await curl.stream(HTTPRequest(url: stack.workers[1].base + "/mcp", headers: headers, timeout: .seconds(60)))
        #expect(resumed.status == 200)
        var rest: [ServerSentEvent] = []
        for try await event in resumed.body.serverSentEvents { rest.append(event) }

        let stream = try #require(EventIDs.parse(lastID))
        let numbers = rest.compactMap { $0.id.flatMap(EventIDs.parse) }.map(\.number)
        #expect(numbers.first == stream.number + 1, "resumed right after \(lastID): \(numbers)")
        #expect(numbers == Array(numbers.indices.map { $0 + stream.number + 1 }), "contiguous, none twice: \(numbers)")
        #expect(Set(firstPart.compactMap(\.id)).isDisjoint(with: Set(rest.compactMap(\.id))))
        let final = (try? JSONSerialization.jsonObject(with: Data((rest.last?.data ?? "").utf8))) as? [String: Any]
        #expect(final?["id"] as? Int == 41)
        let content = ((final?["result"] as? [String: Any])?["structuredContent"] as? [String: Any])
        let whole = content?["message"] as? String
        #expect(whole?.hasPrefix("Answer to 'resume me'") == true)
        let stored = try await stack.host!.client().send(.get, "/sessions/conv:local:resumed/history").decode(HostAPI.History.self)
        #expect(stored.data.last?.content == whole)

        // An unknown stream, or a malformed id, is refused.
        headers.set("Last-Event-ID", "ffffffffffffffff-3")
        #expect(try await JSONClient(base: stack.workers[1].base).send(.get, "/mcp", headers: headers).status == 404)
        headers.set("Last-Event-ID", "garbage")
        #expect(try await JSONClient(base: stack.workers[1].base).send(.get, "/mcp", headers: headers).status == 400)
        await stack.stop()
    }

    /// A question whose streamed answer (the stand-in repeats it, a word per chunk) lasts
    /// about 8 s at 150 ms a word: a call that is not stopped is still sending when the test
    /// looks, however loaded the machine, so "the transfer was never closed" cannot pass for
    /// "it ended by itself".
    static func longQuery(_ start: String) -> String {
        ([start] + (1...50).map { "word\($0)" }).joined(separator: " ")
    }

    @Test("2026-07-28: closing the stream cancels the call; the upstream transfer is closed within 1 s and nothing is stored")
    func closingTheStreamCancels() async throws {
        let stack = try await WorkerStack.start()
        try await stack.standIn.control(["chunk_interval_ms": 150])
        let curl = CurlClient()
        defer { curl.shutdown() }
        let response = try await curl.stream(
            streamedQuery(base: stack.worker.base, client: nil, id: 7, query: Self.longQuery("stop me"), conversation: "cancelled-modern", modern: true))
        var received = 0
        for try await _ in response.body.serverSentEvents {
            received += 1
            if received == 2 { break }
        }
        let dropped = Date().timeIntervalSince1970
        let disconnect = try await stack.standIn.disconnect(from: "/v2/query", after: dropped - 0.5)
        // The answer streams a word every 150 ms: the transfer ended long before it could have.
        #expect(disconnect - dropped < 3.0, "the upstream transfer was closed \(disconnect - dropped) s after the client left")
        // Once the call's end is recorded, nothing was stored, and nothing will be.
        try await eventually("the call ended as cancelled") {
            let metrics = try await JSONClient(base: stack.worker.base).send(.get, "/metrics").text
            return (metric(metrics, "worker_tool_calls_total", labels: #"outcome="cancelled""#) ?? 0) >= 1
        }
        let stored = try await stack.host!.client().send(.get, "/sessions/conv:local:cancelled-modern/history").decode(HostAPI.History.self)
        #expect(stored.data.isEmpty, "a cancelled call records nothing")
        await stack.stop()
    }

    @Test("2025-11-25: notifications/cancelled sent to another worker stops the call within 1 s; nothing is stored")
    func cancelledThroughAnotherWorker() async throws {
        let stack = try await WorkerStack.start(workers: 2)
        try await stack.standIn.control(["chunk_interval_ms": 150])
        let client = try await stack.session()
        let curl = CurlClient()
        defer { curl.shutdown() }
        let response = try await curl.stream(
            streamedQuery(
                base: stack.worker.base, client: client, id: 9, query: Self.longQuery("cancel me"), conversation: "cancelled-legacy", modern: false))
        var events: [ServerSentEvent] = []
        let reader = Task {
            var seen: [ServerSentEvent] = []
            for try await event in response.body.serverSentEvents { seen.append(event) }
            return seen
        }
        try await eventually("the streamed query reached Greptile") { try await stack.standIn.requests(to: "/v2/query").count == 1 }
        let sent = Date().timeIntervalSince1970
        let cancel = try await client.post(
            #"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"user"}}"#, via: stack.workers[1].base)
        #expect(cancel.status == 202)
        let disconnect = try await stack.standIn.disconnect(from: "/v2/query", after: sent - 0.2)
        #expect(disconnect - sent < 3.0, "the upstream transfer was closed \(disconnect - sent) s after the cancellation")
        events = try await reader.value
        #expect(!events.contains { $0.data.contains("\"result\"") }, "a cancelled request gets no response")
        let stored = try await stack.host!.client().send(.get, "/sessions/conv:local:cancelled-legacy/history").decode(HostAPI.History.self)
        #expect(stored.data.isEmpty)
        await stack.stop()
    }

    @Test("a long call that is not streamed still sends progress while it waits, when the client asked for progress")
    func heartbeatProgress() async throws {
        let stack = try await WorkerStack.start()
        try await stack.standIn.control(["delay_ms": 3500])
        let client = try await stack.session()
        let body =
            #"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_repository_info","arguments":{"remote":"github","repository":"acme/widgets","branch":"main"},"_meta":{"progressToken":"slow"}}}"#
        let response = try await client.post(body)
        #expect(response.headers["Content-Type"] == "text/event-stream")
        let text = String(decoding: response.body, as: UTF8.self)
        #expect(text.contains("waiting for Greptile"), "\(text)")
        let result = response.rpcReply["result"] as? [String: Any]
        #expect(result?["isError"] as? Bool == false)
        await stack.stop()
    }
}

/// Event ids `<stream>-<n>`.
enum EventIDs {
    static func parse(_ id: String) -> (stream: String, number: Int)? {
        guard let dash = id.lastIndex(of: "-"), let number = Int(id[id.index(after: dash)...]) else { return nil }
        return (String(id[..<dash]), number)
    }
}

import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

@Suite("mcp-worker: tools, conversations and sessions through real processes")
struct ConversationTests {
    @Test("a full conversation: every tool, upstream bodies and headers checked, history kept in the host")
    func fullConversation() async throws {
        let stack = try await WorkerStack.start()
        let client = try await stack.session()

        let tools = try await client.request("tools/list")
        let listed = ((tools["result"] as? [String: Any])?["tools"] as? [[String: Any]]) ?? []
        #expect(
            Set(listed.compactMap { $0["name"] as? String }) == [
                "index_repository", "query_repository", "search_repository", "get_repository_info", "list_conversations", "share_conversation",
                "unshare_conversation",
            ])
        for tool in listed {
            let schema = tool["inputSchema"] as? [String: Any]
            #expect(schema?["type"] as? String == "object")
            #expect((tool["description"] as? String)?.isEmpty == false)
        }

        // index_repository without a branch: GitHub gives the default branch, Greptile gets the seed's defaults.
        let indexed = try await client.callTool("index_repository", ["remote": "github", "repository": "acme/private-lib"])
        #expect(!indexed.isError, "\(indexed.text)")
        #expect(indexed.structured["branch"] as? String == "develop")
        let github = try await stack.standIn.requests(to: "/github/repos/acme/private-lib")
        #expect(github.count == 1)
        #expect(WorkerStack.header(try github.at(0), "Authorization") == "Bearer \(UpstreamStandIn.githubToken)")
        #expect(WorkerStack.header(try github.at(0), "Accept") == "application/vnd.github+json")
        #expect(WorkerStack.header(try github.at(0), "User-Agent")?.hasPrefix("greptile-mcp/") == true)
        let indexRequest = try #require(try await stack.standIn.requests(to: "/v2/repositories").first)
        let indexBody = WorkerStack.body(indexRequest)
        #expect(indexBody["repository"] as? String == "acme/private-lib")
        #expect(indexBody["branch"] as? String == "develop")
        #expect(indexBody["remote"] as? String == "github")
        #expect(indexBody["reload"] as? Bool == true)
        #expect(indexBody["notify"] as? Bool == false)

        let info = try await client.callTool("get_repository_info", ["remote": "github", "repository": "acme/private-lib"])
        #expect(info.structured["status"] as? String == "cloning")
        let statusRequest = try #require(try await stack.standIn.requests(to: "/v2/repositories/").first)
        #expect(statusRequest["path"] as? String == "/v2/repositories/github%3Adevelop%3Aacme%2Fprivate-lib")
        // The default branch was looked up once and remembered.
        #expect(try await stack.standIn.requests(to: "/github/").count == 1)

        let search = try await client.callTool("search_repository", ["query": "router", "repositories": [WorkerStack.repository]])
        #expect(search.structured["count"] as? Int == 3)
        let first = ((search.structured["results"] as? [[String: Any]]) ?? []).first
        #expect(first?["filepath"] as? String == "src/app.swift")

        // Two turns: the second carries the first question and Greptile's answer.
        let turn1 = try await client.callTool("query_repository", ["query": "How are requests routed?", "repositories": [WorkerStack.repository]])
        #expect(!turn1.isError, "\(turn1.text)")
        let conversation = try #require(turn1.structured["_session_id"] as? String)
        let answer1 = try #require(turn1.structured["message"] as? String)
        #expect(answer1.contains("How are requests routed?"))
        #expect(((turn1.structured["sources"] as? [Any]) ?? []).count == 3)
        let turn2 = try await client.callTool(
            "query_repository", ["query": "And errors?", "repositories": [WorkerStack.repository], "session_id": conversation, "genius": false])
        #expect(turn2.structured["_session_id"] as? String == conversation)

        let queries = try await stack.standIn.requests(to: "/v2/query")
        #expect(queries.count == 2)
        #expect(WorkerStack.turns(try queries.at(0)) == ["user: How are requests routed?"])
        #expect(WorkerStack.turns(try queries.at(1)) == ["user: How are requests routed?", "assistant: \(answer1)", "user: And errors?"])
        let secondBody = WorkerStack.body(try queries.at(1))
        // Greptile's own session is derived from the principal and the conversation: stable
        // across turns, never the caller's raw id (other principals may pick the same one).
        let upstreamSession = try #require(secondBody["sessionId"] as? String)
        #expect(upstreamSession != conversation)
        #expect(upstreamSession.count == 32 && upstreamSession.allSatisfy(\.isHexDigit))
        #expect(WorkerStack.body(try queries.at(0))["sessionId"] as? String == upstreamSession)
        #expect(secondBody["genius"] as? Bool == false)
        #expect(secondBody["stream"] as? Bool == false)
        #expect((secondBody["repositories"] as? [[String: Any]])?.first?["branch"] as? String == "main")
        for request in queries {
            #expect(WorkerStack.header(request, "Authorization") == "Bearer \(UpstreamStandIn.greptileKey)")
            #expect(WorkerStack.header(request, "X-GitHub-Token") == UpstreamStandIn.githubToken)
            #expect(WorkerStack.header(request, "Content-Type") == "application/json")
        }

        // The whole conversation is in the durable host, under the principal that owns it.
        let host = try #require(stack.host)
        let stored = try await host.client().send(.get, "/sessions/conv:local:\(conversation)/history").decode(HostAPI.History.self)
        #expect(stored.data.map(\.role) == [.user, .assistant, .user, .assistant])
        #expect(stored.data.map(\.content) == ["How are requests routed?", answer1, "And errors?", turn2.structured["message"] as? String ?? "?"])
        await stack.stop()
    }

    @Test("a turn is one write: when the host refuses it (a limit), neither the question nor the answer is stored")
    func refusedTurnStoresNothing() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        let host = HostHarness(arguments: ["--max-messages-per-session", "3"])
        try await host.start()
        let worker = WorkerHarness(environment: standIn.workerEnvironment)
        try await worker.start(hosts: [host.member])
        var client = MCPTestClient(base: worker.base)
        try await client.initialize()
        let first = try await client.callTool("query_repository", ["query": "q1", "repositories": [WorkerStack.repository], "session_id": "bounded"])
        #expect(!first.isError, "\(first.text)")
        // A second turn would make four messages: the host refuses the whole turn.
        let second = try await client.callTool("query_repository", ["query": "q2", "repositories": [WorkerStack.repository], "session_id": "bounded"])
        #expect(second.isError)
        #expect(second.text.contains("limit"), "\(second.text)")
        let stored = try await host.client().send(.get, "/sessions/conv:local:bounded/history").decode(HostAPI.History.self).data
        #expect(stored.map(\.role) == [.user, .assistant])
        #expect(stored.map(\.content).first == "q1")
        #expect(stored.last?.content == first.structured["message"] as? String)
        await worker.stop()
        await host.stop()
        await standIn.stop()
    }

    @Test("a streamed answer is read chunk by chunk and stored like any other")
    func streamedQuery() async throws {
        let stack = try await WorkerStack.start()
        let client = try await stack.session()
        let plain = try await client.callTool("query_repository", ["query": "Same question", "repositories": [WorkerStack.repository], "session_id": "plain"])
        let streamed = try await client.callTool(
            "query_repository", ["query": "Same question", "repositories": [WorkerStack.repository], "session_id": "streamed", "stream": true])
        #expect(!streamed.isError, "\(streamed.text)")
        #expect(streamed.structured["message"] as? String == plain.structured["message"] as? String)
        let citations = (streamed.structured["sources"] as? [[String: Any]]) ?? []
        #expect(citations.map { $0["file"] as? String } == ["src/app.swift", "src/server/router.swift"])
        let request = try #require(try await stack.standIn.requests(to: "/v2/query").last)
        #expect(WorkerStack.body(request)["stream"] as? Bool == true)
        let stored = try await stack.host!.client().send(.get, "/sessions/conv:local:streamed/history").decode(HostAPI.History.self)
        #expect(stored.data.map(\.role) == [.user, .assistant])
        #expect(stored.data.map(\.content) == ["Same question", plain.structured["message"] as? String ?? "?"])
        await stack.stop()
    }

    @Test("only the newest messages up to the window go upstream; everything is kept; previous_messages replaces history")
    func windowAndPreviousMessages() async throws {
        let stack = try await WorkerStack.start(workerArguments: ["--history-window", "3"])
        let client = try await stack.session()
        var answers: [String] = []
        for question in ["q1", "q2", "q3"] {
            let result = try await client.callTool("query_repository", ["query": question, "repositories": [WorkerStack.repository], "session_id": "w"])
            #expect(!result.isError, "\(result.text)")
            answers.append(result.structured["message"] as? String ?? "?")
        }
        let last = try #require(try await stack.standIn.requests(to: "/v2/query").last)
        let sent = WorkerStack.turns(last)
        #expect(sent.count == 3)
        #expect(sent.first?.hasPrefix("user: q2") == true)
        #expect(sent.last == "user: q3")
        let hostClient = stack.host!.client()
        let kept = try await hostClient.send(.get, "/sessions/conv:local:w/history").decode(HostAPI.History.self).data
        #expect(kept.map(\.role) == [.user, .assistant, .user, .assistant, .user, .assistant])
        #expect(kept.map(\.content) == ["q1", answers[0], "q2", answers[1], "q3", answers[2]])

        let replaced = try await client.callTool(
            "query_repository",
            [
                "query": "q4", "repositories": [WorkerStack.repository], "session_id": "w",
                "previous_messages": [["role": "user", "content": "earlier"], ["role": "assistant", "content": "reply"]],
            ])
        #expect(!replaced.isError, "\(replaced.text)")
        let replacedRequest = try #require(try await stack.standIn.requests(to: "/v2/query").last)
        #expect(WorkerStack.turns(replacedRequest) == ["user: earlier", "assistant: reply", "user: q4"])
        let stored = try await hostClient.send(.get, "/sessions/conv:local:w/history").decode(HostAPI.History.self).data
        #expect(stored.map(\.role) == [.user, .assistant, .user, .assistant])
        #expect(stored.map(\.content) == ["earlier", "reply", "q4", replaced.structured["message"] as? String ?? "?"])
        await stack.stop()
    }

    @Test("a session started on one worker continues on another, and after its worker is killed and restarted")
    func sessionSurvivesWorkerChangeAndRestart() async throws {
        let stack = try await WorkerStack.start(workers: 2)
        var client = try await stack.session()
        let turn1 = try await client.callTool("query_repository", ["query": "first", "repositories": [WorkerStack.repository]])
        let conversation = try #require(turn1.structured["_session_id"] as? String)

        // The same MCP session, through the second worker.
        let turn2 = try await client.callTool(
            "query_repository", ["query": "second", "repositories": [WorkerStack.repository], "session_id": conversation], via: stack.workers[1].base)
        #expect(!turn2.isError, "\(turn2.text)")
        #expect((turn2.structured["message"] as? String)?.contains("after 1 earlier questions") == true)

        // Kill the first worker without warning and start it again on its port.
        let port = stack.worker.port
        stack.worker.process.signal(SIGKILL)
        try await stack.worker.process.waitForExit()
        try await stack.worker.start(hosts: [stack.host!.member], port: port)
        client.base = stack.worker.base
        let turn3 = try await client.callTool("query_repository", ["query": "third", "repositories": [WorkerStack.repository], "session_id": conversation])
        #expect(!turn3.isError, "\(turn3.text)")
        #expect((turn3.structured["message"] as? String)?.contains("after 2 earlier questions") == true)
        #expect(try await client.request("ping")["result"] != nil)
        let stored = try await stack.host!.client().send(.get, "/sessions/conv:local:\(conversation)/history").decode(HostAPI.History.self).data
        let answers = [turn1, turn2, turn3].map { $0.structured["message"] as? String ?? "?" }
        #expect(stored.map(\.role) == [.user, .assistant, .user, .assistant, .user, .assistant])
        #expect(stored.map(\.content) == ["first", answers[0], "second", answers[1], "third", answers[2]])
        await stack.stop()
    }

    @Test(
        "a conversation only one worker writes is continued from its memory, one host exchange a turn; another worker's turn in between is found when the stale turn is stored, and the question asked again"
    )
    func turnsFromMemory() async throws {
        let stack = try await WorkerStack.start(workers: 2)
        defer { Task { await stack.stop() } }
        let client = try await stack.session()
        let host = stack.host!.client()
        func count(_ base: String, _ name: String, labels: String = "") async throws -> Double {
            metric(try await JSONClient(base: base).send(.get, "/metrics").text, name, labels: labels) ?? 0
        }
        func historyReads() async throws -> Double {
            try await count(stack.host!.base, "host_requests_total", labels: #"route="/sessions/{id}/history""#)
        }
        func ask(_ question: String, via worker: Int) async throws -> String {
            let result = try await client.callTool(
                "query_repository", ["query": question, "repositories": [WorkerStack.repository], "session_id": "alone"],
                via: stack.workers[worker].base)
            #expect(!result.isError, "\(result.text)")
            return try #require(result.structured["message"] as? String)
        }
        var answers: [String] = []
        // The first turn reads; the second reads too and finds what the first wrote, and nothing else.
        answers.append(try await ask("q1", via: 0))
        answers.append(try await ask("q2", via: 0))
        let reads = try await historyReads()
        answers.append(try await ask("q3", via: 0))
        answers.append(try await ask("q4", via: 0))
        #expect(try await historyReads() == reads, "turns from memory read no history")
        #expect(try await count(stack.workers[0].base, "worker_session_remembered_turn_views_total") == 2)
        #expect(answers[3].contains("after 3 earlier questions"), "\(answers[3])")

        // A turn through the other worker, which reads.
        answers.append(try await ask("q5", via: 1))
        #expect(answers[4].contains("after 4 earlier questions"), "\(answers[4])")
        // The first worker's memory is stale now: its turn's write is refused, the question asked again with the whole history.
        let asked = try await stack.standIn.requests(to: "/v2/query").count
        answers.append(try await ask("q6", via: 0))
        #expect(answers[5].contains("after 5 earlier questions"), "\(answers[5])")
        let queries = try await stack.standIn.requests(to: "/v2/query")
        #expect(queries.count == asked + 2, "asked once with the stale history, once again")
        #expect(
            WorkerStack.turns(try queries.at(queries.count - 2)).filter { $0.hasPrefix("user:") } == [
                "user: q1", "user: q2", "user: q3", "user: q4", "user: q6",
            ], "the stale ask lacked q5")
        #expect(try await count(stack.workers[0].base, "worker_session_history_changed_total") == 1)
        // After a conflict the worker reads again: its next turn is no remembered view.
        answers.append(try await ask("q7", via: 0))
        #expect(try await count(stack.workers[0].base, "worker_session_remembered_turn_views_total") == 3)

        let stored = try await host.send(.get, "/sessions/conv:local:alone/history").decode(HostAPI.History.self).data
        let questions = (1...7).map { "q\($0)" }
        #expect(stored.map(\.content) == zip(questions, answers).flatMap { [$0, $1] }, "every turn once, in order")

        // Remembered again (q7 read it as its own write left it), then deleted behind the worker's back:
        // the remembered turn is refused, asked once more with what a read shows (nothing), and starts anew.
        _ = try await ask("q8", via: 0)
        #expect(try await host.send(.delete, "/sessions/conv:local:alone/clear").status == 200)
        let beforeDeleted = try await stack.standIn.requests(to: "/v2/query").count
        let fresh = try await ask("q9", via: 0)
        #expect(fresh.contains("after 0 earlier questions"), "\(fresh)")
        #expect(try await stack.standIn.requests(to: "/v2/query").count == beforeDeleted + 2, "asked from memory once, then once again")
        let restarted = try await host.send(.get, "/sessions/conv:local:alone/history").decode(HostAPI.History.self).data
        #expect(restarted.map(\.content) == ["q9", fresh])
    }

    @Test("two turns of one conversation at once on two workers: the one answered second is asked again with the first, and both are kept, in order")
    func concurrentTurns() async throws {
        let stack = try await WorkerStack.start(workers: 2)
        defer { Task { await stack.stop() } }
        let client = try await stack.session()
        let repository = WorkerStack.repository
        let first = try await client.callTool("query_repository", ["query": "q0", "repositories": [repository], "session_id": "race"])
        #expect(!first.isError, "\(first.text)")
        // The next Greptile call is held until released: the turn through the first worker, asked first, is answered last.
        try await stack.standIn.control(["fault": ["path_prefix": "/v2/query", "times": 1, "hold": "slow"]])
        let before = try await stack.standIn.requests(to: "/v2/query").count
        let slow = Task { () async throws -> (isError: Bool, message: String) in
            let result = try await client.callTool("query_repository", ["query": "slow", "repositories": [WorkerStack.repository], "session_id": "race"])
            return (result.isError, result.structured["message"] as? String ?? result.text)
        }
        try await eventually("the first turn asked Greptile") { try await stack.standIn.requests(to: "/v2/query").count > before }
        let fast = try await client.callTool(
            "query_repository", ["query": "fast", "repositories": [repository], "session_id": "race"], via: stack.workers[1].base)
        #expect((fast.structured["message"] as? String)?.contains("after 1 earlier questions") == true, "\(fast.text)")
        try await stack.standIn.control(["release": "slow"])
        let late = try await slow.value
        #expect(!late.isError, "\(late.message)")
        #expect(late.message.contains("after 2 earlier questions"), "asked again with the fast turn: \(late.message)")
        let stored = try await stack.host!.client().send(.get, "/sessions/conv:local:race/history").decode(HostAPI.History.self).data
        #expect(stored.filter { $0.role == .user }.map(\.content) == ["q0", "fast", "slow"])
        #expect(stored.last?.content == late.message)
    }

    @Test("in-memory mode (no --hosts) serves the same tools, for local development")
    func inMemoryMode() async throws {
        let stack = try await WorkerStack.start(durable: false)
        let client = try await stack.session()
        let turn1 = try await client.callTool("query_repository", ["query": "one", "repositories": [WorkerStack.repository], "session_id": "m"])
        let turn2 = try await client.callTool("query_repository", ["query": "two", "repositories": [WorkerStack.repository], "session_id": "m"])
        #expect(!turn1.isError && !turn2.isError)
        #expect((turn2.structured["message"] as? String)?.contains("after 1 earlier questions") == true)
        let health = try await JSONClient(base: stack.worker.base).send(.get, "/health").object
        #expect((health["sessions"] as? [String: Any])?["mode"] as? String == "in-memory")
        #expect(stack.worker.logs.contains("sessions and conversations are kept in memory"))
        await stack.stop()
    }

    @Test("the official MCP Python SDK: tools, a conversation, and its session continued through a restarted worker and a second one")
    func pythonSDKInteroperability() async throws {
        let stack = try await WorkerStack.start(workers: 2)
        let directory = TemporaryDirectory("interop")
        let phase = directory.file("phase1.done")
        let go = directory.file("go")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Interop/mcp_interop.py").path
        let python = try ServiceProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", "-u", script, "--worker", stack.worker.base, "--phase-file", phase, "--go-file", go],
            logPath: directory.file("interop.log"))

        // Phase 1 done: restart the first worker (SIGTERM, then a new process on a new port); the
        // session continues through the restarted worker, then through the second one.
        try await eventually("the Python client finished its first phase: \(python.log)", timeout: .seconds(120)) {
            if python.exitStatus != nil { throw ServiceProcess.Failure(description: "the Python client exited early:\n\(python.log)") }
            return FileManager.default.fileExists(atPath: phase)
        }
        await stack.worker.stop()
        try await stack.worker.start(hosts: [stack.host!.member], port: 0)
        try Data("\(stack.worker.base) \(stack.workers[1].base)".utf8).write(to: URL(fileURLWithPath: go), options: .atomic)

        let status = try await python.waitForExit(timeout: .seconds(120))
        let report = python.log.split(separator: "\n").last.map(String.init) ?? ""
        #expect(status == 0, "\(python.log)")
        let parsed = (try? JSONSerialization.jsonObject(with: Data(report.utf8))) as? [String: Any] ?? [:]
        #expect(parsed["ok"] as? Bool == true, "\(report)")
        #expect(parsed["protocol_version"] as? String == "2025-11-25")
        #expect(parsed["later_workers"] as? [String] == [stack.worker.base, stack.workers[1].base])
        #expect((parsed["streamed_message"] as? String)?.contains("after 3 earlier questions") == true)
        // The host holds the whole conversation: each question, then the answer the client got.
        let exchanges = try #require(parsed["exchanges"] as? [[String]], "\(report)")
        let conversation = try #require(parsed["conversation"] as? String)
        let stored = try await stack.host!.client().send(.get, "/sessions/conv:local:\(conversation)/history").decode(HostAPI.History.self).data
        #expect(exchanges.count == 4)
        #expect(stored.map(\.role) == Array(repeating: [Role.user, .assistant], count: exchanges.count).flatMap { $0 })
        #expect(stored.map(\.content) == exchanges.flatMap { $0 })
        await stack.stop()
    }
}

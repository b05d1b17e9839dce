import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

/// Two workers and one host, with keys for two principals and short task leases, for the
/// tests of MCP tasks.
private struct TaskStack {
    static let alice = "alice-key-0123456789abcdef"
    static let bob = "bob-key-0123456789abcdefgh"
    static var query: [String: Any] { ["remote": "github", "repository": "acme/widgets", "branch": "main"] }

    let stack: WorkerStack

    static func start(workers: Int = 2, arguments: [String] = []) async throws -> TaskStack {
        TaskStack(
            stack: try await WorkerStack.start(
                workers: workers, workerArguments: ["--task-lease", "3", "--index-poll-interval", "0.2"] + arguments,
                workerEnvironment: ["MCP_WORKER_API_KEYS": "alice:\(alice),bob:\(bob)"]))
    }

    var standIn: UpstreamStandIn { stack.standIn }

    func base(_ index: Int) -> String { stack.workers[index].base }

    /// A request of the stateless revision, opted into the tasks extension unless `optIn` is false.
    func modern(
        _ method: String, _ params: [String: Any], worker: Int = 0, key: String = alice, optIn: Bool = true, id: Int = 1
    ) async throws -> (status: Int, reply: [String: Any]) {
        var params = params
        var capabilities: [String: Any] = [:]
        if optIn { capabilities["extensions"] = ["io.modelcontextprotocol/tasks": [String: Any]()] }
        params["_meta"] = ["io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": capabilities]
        var headers: HTTPHeaders = [
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": method, "Authorization": "Bearer \(key)",
        ]
        if let name = (params["name"] ?? params["taskId"]) as? String { headers.set("Mcp-Name", name) }
        let body = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": id, "method": method, "params": params])
        let response = try await JSONClient(base: base(worker)).send(.post, "/mcp", body: body, headers: headers, timeout: .seconds(60))
        return (response.status, response.object)
    }

    /// Starts a query as a task of the extension on `worker`; returns its id.
    func startQuery(_ question: String, session: String? = nil, worker: Int = 0, key: String = alice) async throws -> String {
        var arguments: [String: Any] = ["query": question, "repositories": [Self.query]]
        if let session { arguments["session_id"] = session }
        let (status, reply) = try await modern("tools/call", ["name": "query_repository", "arguments": arguments], worker: worker, key: key)
        let result = reply["result"] as? [String: Any] ?? [:]
        guard status == 200, result["resultType"] as? String == "task", let id = result["taskId"] as? String else {
            throw ServiceProcess.Failure(description: "not a task: HTTP \(status) \(reply)")
        }
        return id
    }

    /// `tasks/get` of the extension: the task, or the error.
    func task(_ id: String, worker: Int = 1, key: String = alice) async throws -> [String: Any] {
        let (_, reply) = try await modern("tasks/get", ["taskId": id], worker: worker, key: key)
        return reply["result"] as? [String: Any] ?? reply
    }

    /// Polls until the task is no longer working (polling is what takes a lost runner's task over).
    func ended(_ id: String, worker: Int = 1, timeout: Duration = .seconds(60)) async throws -> [String: Any] {
        try await eventually("task \(id) ends", timeout: timeout, every: .milliseconds(200)) {
            let task = try await task(id, worker: worker)
            return task["status"] as? String == "working" ? nil : task
        }
    }

    /// The stored messages of alice's conversation `session`.
    func conversation(_ session: String, principal: String = "alice") async throws -> [Message] {
        try await stack.host!.client().send(.get, "/sessions/conv:\(principal):\(session)/history").decode(HostAPI.History.self).data
    }

    func stop() async { await stack.stop() }
}

@Suite("MCP tasks: both families, durable in the hosts, served by any worker, surviving the worker that ran them")
struct TaskTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Interop/mcp_tasks.py").path

    @Test("both families driven as their specifications say: the SDK's extension client and 2025-11-25's methods, across workers")
    func families() async throws {
        let tasks = try await TaskStack.start()
        try await tasks.standIn.control(["delay_ms": 1_500])
        for family in ["extension", "experimental"] {
            let directory = TemporaryDirectory("tasks")
            let python = try ServiceProcess(
                executable: "/usr/bin/env",
                arguments: [
                    "python3", "-u", Self.script, "--worker", tasks.base(0), "--other", tasks.base(1), "--family", family, "--api-key", TaskStack.alice,
                ],
                logPath: directory.file("tasks.log"))
            #expect(try await python.waitForExit(timeout: .seconds(120)) == 0, "\(family): \(python.log)")
            let report = (try? JSONSerialization.jsonObject(with: Data((python.log.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
            #expect(report["ok"] as? Bool == true, "\(family): \(python.log)")
            if family == "extension" {
                #expect((report["statuses"] as? [String])?.first == "working")
                #expect(report["read_elsewhere"] as? Bool == true)
                let stored = try await tasks.conversation(report["session_id"] as? String ?? "?")
                #expect(stored.map(\.content) == ["what does the router do?", report["answer"] as? String ?? "?"], "the task's turn, once")
            } else {
                #expect(report["links"] as? Int ?? 0 > 0, "the answer's sources as resource links")
            }
        }
        await tasks.stop()
    }

    @Test("the worker running a task killed with kill -9 mid-call: another takes it over, and the conversation holds the turn once")
    func runnerKilled() async throws {
        let tasks = try await TaskStack.start()
        // The first runner's Greptile call is held until its worker dies, so it can never have
        // stored an answer before the kill, however slow the machine; the takeover's is answered.
        try await tasks.standIn.control(["fault": ["path_prefix": "/v2/query", "times": 1, "delay_ms": 120_000]])
        let id = try await tasks.startQuery("survive the kill", session: "killed-runner")
        try await eventually("the first runner asks Greptile") { try await tasks.standIn.requests(to: "/v2/query").count == 1 }
        kill(tasks.stack.workers[0].process.pid, SIGKILL)
        let ended = try await tasks.ended(id, worker: 1)
        #expect(ended["status"] as? String == "completed", "\(ended)")
        let answer = ((ended["result"] as? [String: Any])?["structuredContent"] as? [String: Any])?["message"] as? String
        #expect(answer?.isEmpty == false)
        // Asked twice (the first transfer died with its worker), stored once.
        let asked = try await tasks.standIn.requests(to: "/v2/query").count
        #expect(asked == 2)
        let stored = try await tasks.conversation("killed-runner")
        #expect(stored.map(\.content) == ["survive the kill", answer ?? "?"])
        await tasks.stop()
    }

    @Test("a worker stopped with SIGTERM gives its tasks' leases back, and the next look elsewhere takes the task over at once")
    func gracefulShutdownReleases() async throws {
        let tasks = try await TaskStack.start(arguments: ["--task-lease", "600"])
        // The first runner's Greptile call is held until its worker stops it (however slow the
        // machine, it cannot be answered first); the takeover's is answered at once.
        try await tasks.standIn.control(["fault": ["path_prefix": "/v2/query", "times": 1, "delay_ms": 120_000]])
        let id = try await tasks.startQuery("released at shutdown", session: "released")
        try await eventually("the first runner asks Greptile") { try await tasks.standIn.requests(to: "/v2/query").count == 1 }
        tasks.stack.workers[0].process.signal(SIGTERM)
        _ = try await tasks.stack.workers[0].process.waitForExit(timeout: .seconds(30))
        let record = try await tasks.stack.host!.client().send(.get, "/sessions/task:\(id)").object
        let metadata = (record["data"] as? [String: Any])?["metadata"] as? [String: Any] ?? [:]
        #expect(metadata["status"] as? String == "working" && metadata["lease_until"] as? Double == 0, "\(record)")
        // A lease of ten minutes, given back: worker 1 takes the task over at its first look.
        let ended = try await tasks.ended(id, worker: 1, timeout: .seconds(30))
        #expect(ended["status"] as? String == "completed", "\(ended)")
        let asked = try await tasks.standIn.requests(to: "/v2/query").count
        #expect(asked == 2)
        #expect(try await tasks.conversation("released").count == 2)
        await tasks.stop()
    }

    @Test("a stored answer whose turn was not written is finished by the next runner without asking again, and a second finisher writes nothing")
    func storedAnswerFinishedOnce() async throws {
        let tasks = try await TaskStack.start(workers: 1)
        let host = tasks.stack.host!.client()
        let id = "0123456789abcdef0123456789abcdef"
        let answer: [String: Any] = ["message": "the stored answer", "sources": [], "_session_id": "finished-once"]
        let call = ["name": "query_repository", "arguments": ["query": "asked once", "repositories": [TaskStack.query], "genius": true]] as [String: Any]
        let outcome: [String: Any] = [
            "result": ["content": [["type": "text", "text": "stored"]], "isError": false, "structuredContent": answer] as [String: Any]
        ]
        func text(_ value: Any) throws -> String { String(decoding: try JSONSerialization.data(withJSONObject: value), as: UTF8.self) }
        // A runner stored its answer, then was lost before its turn (its lease long lapsed).
        func lose(attempt: Int) async throws {
            let update: [String: Any] = [
                "operation": "set_history", "principal": "alice", "expires_after": 600,
                "messages": [["role": "user", "content": try text(call)], ["role": "assistant", "content": try text(outcome)]],
                "metadata": [
                    "kind": "task", "family": "io.modelcontextprotocol/tasks", "tool": "query_repository", "ttl": 600, "session_id": "finished-once",
                    "status": "working", "attempt": attempt, "lease_until": 0, "answered_by": 1, "changed_at": 1_764_000_000,
                ] as [String: Any],
            ]
            let response = try await host.send(
                .post, "/sessions/task:\(id)/update", body: try JSONSerialization.data(withJSONObject: update), headers: ["Content-Type": "application/json"])
            #expect(response.status == 200, "\(response.text)")
        }
        try await lose(attempt: 1)
        let first = try await tasks.ended(id, worker: 0)
        #expect(first["status"] as? String == "completed", "\(first)")
        #expect(((first["result"] as? [String: Any])?["structuredContent"] as? [String: Any])?["message"] as? String == "the stored answer")
        #expect(try await tasks.conversation("finished-once").map(\.content) == ["asked once", "the stored answer"])
        // Lost again after its turn was written: the next runner finds the conversation's mark and writes nothing.
        try await lose(attempt: 2)
        #expect(try await tasks.ended(id, worker: 0)["status"] as? String == "completed")
        #expect(try await tasks.conversation("finished-once").map(\.content) == ["asked once", "the stored answer"])
        #expect(try await tasks.standIn.requests(to: "/v2/query").isEmpty, "a stored answer is never asked again")
        await tasks.stop()
    }

    @Test("tasks/cancel on another worker aborts the upstream call within a second; nothing is stored; cancelled stays cancelled")
    func cancelFromAnywhere() async throws {
        let tasks = try await TaskStack.start()
        try await tasks.standIn.control(["delay_ms": 30_000])
        let id = try await tasks.startQuery("cancel me", session: "cancelled-task")
        try await eventually("the runner asks Greptile") { try await tasks.standIn.requests(to: "/v2/query").count == 1 }
        let sentAt = Date().timeIntervalSince1970
        let (status, reply) = try await tasks.modern("tasks/cancel", ["taskId": id], worker: 1)
        let cancelledAt = Date().timeIntervalSince1970
        #expect(status == 200 && (reply["result"] as? [String: Any])?["resultType"] as? String == "complete", "\(reply)")
        let left = try await tasks.standIn.disconnect(from: "/v2/query", after: sentAt - 0.1)
        // Within a second of the cancel's answer (the runner's watcher reads every 250 ms).
        #expect(left - cancelledAt < 1.0, "the upstream transfer ended \(left - cancelledAt) s after the cancel was answered")
        print("tasks/cancel: answered after \(cancelledAt - sentAt) s; the upstream transfer ended \(left - sentAt) s after it was sent")
        #expect(try await tasks.task(id, worker: 0)["status"] as? String == "cancelled")
        try await Task.sleep(for: .seconds(2))
        #expect(try await tasks.task(id, worker: 1)["status"] as? String == "cancelled", "a task never leaves a final state")
        #expect(try await tasks.conversation("cancelled-task").isEmpty, "a cancelled task stores nothing in its conversation")
        await tasks.stop()
    }

    @Test("a task is kept ttl after it ends, then is gone; another principal sees none of alice's tasks")
    func lifetimeAndPrivacy() async throws {
        let tasks = try await TaskStack.start(workers: 1)
        var alice = MCPTestClient(base: tasks.base(0), apiKey: TaskStack.alice)
        try await alice.initialize()
        func search(ttl: Int?) async throws -> String {
            var call: [String: Any] = ["name": "search_repository", "arguments": ["query": "router", "repositories": [TaskStack.query]]]
            call["task"] = ttl.map { ["ttl": $0] } ?? [String: Any]()
            let created = try await alice.request("tools/call", call)
            let task = try #require((created["result"] as? [String: Any])?["task"] as? [String: Any])
            let id = try #require(task["taskId"] as? String)
            #expect(task["ttl"] as? Int == ttl ?? 3_600_000 && id.count == 32, "\(task)")
            let result = try await alice.request("tasks/result", ["taskId": id])
            #expect(((result["result"] as? [String: Any])?["structuredContent"] as? [String: Any])?["count"] as? Int ?? 0 > 0, "\(result)")
            return id
        }
        let id = try await search(ttl: nil)

        var bob = MCPTestClient(base: tasks.base(0), apiKey: TaskStack.bob)
        try await bob.initialize()
        let unknown = try await bob.request("tasks/get", ["taskId": String(repeating: "0", count: 32)])
        for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
            let reply = try await bob.request(method, ["taskId": id])
            #expect((reply["error"] as? [String: Any])?["code"] as? Int == -32602, "\(method): \(reply)")
            #expect(
                ((reply["error"] as? [String: Any])?["message"] as? String)?.replacingOccurrences(of: id, with: "ID")
                    == ((unknown["error"] as? [String: Any])?["message"] as? String)?.replacingOccurrences(of: String(repeating: "0", count: 32), with: "ID"),
                "\(method) answers as for a task that does not exist")
        }
        let listed = try await bob.request("tasks/list", [:])
        #expect(((listed["result"] as? [String: Any])?["tasks"] as? [Any])?.isEmpty == true)
        let (_, modern) = try await tasks.modern("tasks/get", ["taskId": id], worker: 0, key: TaskStack.bob)
        #expect((modern["error"] as? [String: Any])?["code"] as? Int == -32602)
        #expect(try await alice.request("tasks/get", ["taskId": id])["result"] != nil, "bob's looks changed nothing")

        // A task asking for 8 s is there for its result, and gone 8 s or more after it began.
        let began = ContinuousClock.now
        let short = try await search(ttl: 8_000)
        try await eventually("the task is gone after its ttl", timeout: .seconds(60), every: .milliseconds(250)) {
            let reply = try await alice.request("tasks/get", ["taskId": short])
            return (reply["error"] as? [String: Any])?["code"] as? Int == -32602
        }
        #expect(ContinuousClock.now - began >= .seconds(8), "kept its ttl")
        await tasks.stop()
    }

    @Test("the same question asked on two workers at once runs one upstream call, and both get the same task")
    func identicalQuestionsRunOnce() async throws {
        let tasks = try await TaskStack.start()
        try await tasks.standIn.control(["delay_ms": 1_500])
        async let first = tasks.startQuery("asked twice", worker: 0)
        async let second = tasks.startQuery("asked twice", worker: 1)
        let (one, two) = try await (first, second)
        #expect(one == two)
        let ended = try await tasks.ended(one)
        #expect(ended["status"] as? String == "completed")
        #expect(try await tasks.standIn.requests(to: "/v2/query").count == 1)
        // Asked again once it has ended, it is a new task.
        let again = try await tasks.startQuery("asked twice", worker: 1)
        #expect(again != one)
        _ = try await tasks.ended(again)
        await tasks.stop()
    }

    @Test("an indexing task tells how far Greptile got, and ends when the repository is indexed")
    func indexing() async throws {
        let tasks = try await TaskStack.start(workers: 1)
        // Greptile's indexing stays at processing until the test has read its progress.
        try await tasks.standIn.control(["index_hold": true])
        let (status, reply) = try await tasks.modern(
            "tools/call", ["name": "index_repository", "arguments": ["remote": "github", "repository": "acme/r3", "branch": "main"]])
        let id = try #require((reply["result"] as? [String: Any])?["taskId"] as? String, "HTTP \(status) \(reply)")
        let progress = try await eventually("the task tells how far indexing got", timeout: .seconds(30), every: .milliseconds(100)) {
            let task = try await tasks.task(id, worker: 0)
            #expect(task["status"] as? String == "working", "\(task)")
            return (task["statusMessage"] as? String).flatMap { $0.contains("processing") ? $0 : nil }
        }
        // The stand-in's processing step has seen two of its files.
        #expect(progress.hasPrefix("Greptile is indexing: processing, 2 of ") && progress.hasSuffix(" files"), "\(progress)")
        try await tasks.standIn.control(["index_hold": false])
        let ended = try await tasks.ended(id, worker: 0)
        #expect(ended["status"] as? String == "completed", "\(ended)")
        let structured = (ended["result"] as? [String: Any])?["structuredContent"] as? [String: Any]
        #expect((structured?["indexing"] as? [String: Any])?["status"] as? String == "completed")
        #expect(try await tasks.standIn.requests(to: "/v2/repositories").filter { $0["method"] as? String == "POST" }.count == 1)
        await tasks.stop()
    }

    @Test("clients that do not ask for tasks see no change; tasks requests without the extension are refused (-32021)")
    func noChangeWithoutTasks() async throws {
        let tasks = try await TaskStack.start(workers: 1, arguments: ["--tasks-per-principal", "2"])
        var older = MCPTestClient(base: tasks.base(0), apiKey: TaskStack.alice)
        older.protocolVersion = "2025-06-18"
        try await older.initialize()
        let listed = try await older.request("tools/list")
        let tools = (listed["result"] as? [String: Any])?["tools"] as? [[String: Any]] ?? []
        #expect(!tools.isEmpty && tools.allSatisfy { $0["execution"] == nil })
        // An older revision knows no tasks: `task` is ignored and the call answered.
        let answered = try await older.request(
            "tools/call", ["name": "search_repository", "arguments": ["query": "router", "repositories": [TaskStack.query]], "task": [:]])
        #expect((answered["result"] as? [String: Any])?["structuredContent"] != nil, "\(answered)")
        #expect(try await older.request("tasks/list", [:])["error"] != nil)

        let (status, direct) = try await tasks.modern(
            "tools/call", ["name": "query_repository", "arguments": ["query": "no tasks", "repositories": [TaskStack.query]]], optIn: false)
        #expect(status == 200 && (direct["result"] as? [String: Any])?["resultType"] as? String == "complete", "\(direct)")
        let (refusedStatus, refused) = try await tasks.modern("tasks/get", ["taskId": String(repeating: "0", count: 32)], optIn: false)
        #expect(refusedStatus == 400 && (refused["error"] as? [String: Any])?["code"] as? Int == -32021, "\(refused)")

        // A principal's working tasks are bounded.
        try await tasks.standIn.control(["delay_ms": 20_000])
        let first = try await tasks.startQuery("one", worker: 0)
        let second = try await tasks.startQuery("two", worker: 0)
        let (_, third) = try await tasks.modern(
            "tools/call", ["name": "query_repository", "arguments": ["query": "three", "repositories": [TaskStack.query]]])
        #expect((third["error"] as? [String: Any])?["code"] as? Int == -32003, "\(third)")
        for id in [first, second] { _ = try await tasks.modern("tasks/cancel", ["taskId": id]) }
        await tasks.stop()
    }
}

import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

/// The stand-in, one host on a storage backend, and workers that know alice, bob and the operator.
private struct FaultStack {
    let standIn: UpstreamStandIn
    let host: HostHarness
    let cluster: PostgresCluster?
    let workers: [WorkerHarness]

    static func start(
        _ backend: StorageBackend = .sqlite, workers count: Int = 1, hostArguments: [String] = [], workerArguments: [String] = []
    ) async throws -> FaultStack {
        let standIn = try await UpstreamStandIn.startIndexed()
        let (host, cluster) = try await HostHarness.make(backend, arguments: hostArguments)
        try await host.startServing()
        var workers: [WorkerHarness] = []
        for _ in 0..<count {
            let worker = WorkerHarness(arguments: workerArguments, environment: standIn.workerEnvironment.merging(TeamKeys.environment) { $1 })
            try await worker.start(hosts: [host.member])
            workers.append(worker)
        }
        return FaultStack(standIn: standIn, host: host, cluster: cluster, workers: workers)
    }

    /// A client of worker `index` with a session already initialized.
    func client(_ key: String, worker index: Int = 0) async throws -> MCPTestClient {
        var client = MCPTestClient(base: workers[index].base, apiKey: key)
        try await client.initialize()
        return client
    }

    /// What the host stores of a session.
    func history(_ id: String) async throws -> HostAPI.History {
        try await host.client().send(.get, "/sessions/\(id)/history").decode(HostAPI.History.self)
    }

    /// The operator's view of `/admin/...` on worker `index`.
    func admin(_ index: Int = 0) -> JSONClient {
        TeamKeys.client(workers[index].base, key: TeamKeys.admin)
    }

    /// Holds Greptile's next answer under `path` (e.g. "/v2/query") for `milliseconds`.
    func delayNext(_ path: String, milliseconds: Int) async throws {
        try await standIn.control(["fault": ["path_prefix": path, "delay_ms": milliseconds, "times": 1]])
    }

    func stop() async {
        for worker in workers { await worker.stop() }
        await host.stop()
        await cluster?.stop()
        await standIn.stop()
    }
}

/// A principal's totals in a `/admin/usage` report; nil when it has none.
private func usageTotals(_ report: [String: Any], _ principal: String) -> [String: Any]? {
    (report["principals"] as? [[String: Any]])?.first { $0["principal"] as? String == principal }?["totals"] as? [String: Any]
}

// One test at a time: each starts whole stacks (PostgreSQL for some); a dozen starting beside
// the rest of the suite starved two cores enough to fail other suites' cancellation timings.
@Suite("Faults found by attacking sharing, import, restore and lifetimes", .serialized)
struct AttackFaultTests {
    static var repository: [String: Any] { WorkerStack.repository }

    /// alice's conversation "storage" with one exchange, shared with bob to continue; bob's id for it.
    private static func sharedThread(_ stack: FaultStack, access: String = "continue") async throws -> (MCPTestClient, MCPTestClient, String) {
        let alice = try await stack.client(TeamKeys.alice)
        let bob = try await stack.client(TeamKeys.bob)
        _ = try await alice.ask("How are sessions stored?", in: "storage")
        let shared = try await alice.answer("share_conversation", ["session_id": "storage", "principal": "bob", "access": access])
        return (alice, bob, try #require(shared["their_session_id"] as? String))
    }

    @Test("a principal allowed to continue a shared conversation cannot replace its history with previous_messages", arguments: StorageBackend.allCases)
    func continueNeverRewrites(backend: StorageBackend) async throws {
        let stack = try await FaultStack.start(backend)
        let (_, bob, theirs) = try await Self.sharedThread(stack)
        let before = try await stack.history("conv:alice:storage")
        let refusal = try await bob.refusal(
            "query_repository",
            [
                "query": "Replace it all", "repositories": [Self.repository], "session_id": theirs,
                "previous_messages": [["role": "user", "content": "bob's own history"]],
            ])
        #expect(refusal.contains("only its owner (alice) may do"), "\(refusal)")
        let after = try await stack.history("conv:alice:storage")
        #expect(after.data == before.data, "alice's question and answer are still hers, byte for byte")
        #expect(after.metadata["title"]?.stringValue == "How are sessions stored?")
        #expect(try await stack.standIn.requests(to: "/v2/query").count == 1, "nothing of bob's went to Greptile")
        // Without previous_messages bob continues it, as the share allows.
        #expect(try await bob.ask("And how are they expired?", in: theirs).contains("after 1 earlier questions"))
        #expect(try await stack.history("conv:alice:storage").data.count == 4)
        await stack.stop()
    }

    @Test("a share revoked while a turn through it runs stops that turn from writing into the owner's thread", arguments: StorageBackend.allCases)
    func unshareStopsATurnInFlight(backend: StorageBackend) async throws {
        let stack = try await FaultStack.start(backend)
        let (alice, bob, theirs) = try await Self.sharedThread(stack)
        // Long enough that alice's unshare, even on a loaded machine, lands while bob's turn waits.
        try await stack.delayNext("/v2/query", milliseconds: 12_000)
        let turn = Task {
            try await bob.callTool("query_repository", ["query": "Bob's late question", "repositories": [Self.repository], "session_id": theirs])
        }
        try await eventually("bob's question reached Greptile") { try await stack.standIn.requests(to: "/v2/query").count == 2 }
        let revoked = try await alice.answer("unshare_conversation", ["session_id": "storage", "principal": "bob"])
        #expect(revoked["was_shared"] as? Bool == true)
        let result = try await turn.value
        #expect(result.isError, "the turn cannot be stored where it is no longer allowed: \(result.text)")
        #expect(result.text.contains("stopped being shared with you"), "\(result.text)")
        let stored = try await stack.history("conv:alice:storage")
        #expect(stored.data.map(\.content).filter { !$0.hasPrefix("Answer") } == ["How are sessions stored?"], "nothing of bob's turn in alice's thread")
        await stack.stop()
    }

    @Test("deleting a principal's data is complete across workers: no count a worker held comes back after the erasure")
    func erasureKeepsUsageErased() async throws {
        let stack = try await FaultStack.start(workers: 2)
        let alice = try await stack.client(TeamKeys.alice)
        let aliceElsewhere = try await stack.client(TeamKeys.alice, worker: 1)
        // One count waits in each worker (they write every second).
        _ = try await alice.answer("get_repository_info", Self.repository)
        _ = try await aliceElsewhere.answer("get_repository_info", Self.repository)
        let erased = try await stack.admin(0).send(.delete, "/admin/principals/alice")
        #expect(erased.status == 200 && erased.object["complete"] as? Bool == true, "\(erased.text)")
        // After the erasure bob's count reaches the hosts: both workers have flushed since.
        let bob = try await stack.client(TeamKeys.bob, worker: 1)
        _ = try await bob.answer("get_repository_info", Self.repository)
        let bobOnTheOther = try await stack.client(TeamKeys.bob, worker: 0)
        _ = try await bobOnTheOther.answer("get_repository_info", Self.repository)
        try await eventually("bob's counts from both workers reached the hosts") {
            usageTotals(try await stack.admin(1).send(.get, "/admin/usage").object, "bob")?["calls"] as? Int == 2
        }
        // Past every flush interval again.
        try await Task.sleep(for: .seconds(2.5))
        for index in 0..<2 {
            let report = try await stack.admin(index).send(.get, "/admin/usage?principal=alice").object
            #expect(usageTotals(report, "alice") == nil, "alice's usage stays deleted: \(report)")
        }
        await stack.stop()
    }

    @Test("a turn refused before it reaches Greptile is not counted as a failed Greptile call")
    func refusedTurnIsNoUsage() async throws {
        let stack = try await FaultStack.start()
        let (_, bob, theirs) = try await Self.sharedThread(stack, access: "read")
        #expect(try await bob.refusal("query_repository", ["query": "more?", "repositories": [Self.repository], "session_id": theirs]).contains("read only"))
        _ = try await bob.refusal("get_repository_info", ["remote": "github"])
        _ = try await bob.answer("get_repository_info", Self.repository)
        let totals = try await eventually("bob's call reached the hosts") { () -> [String: Any]? in
            let totals = usageTotals(try await stack.admin().send(.get, "/admin/usage").object, "bob")
            return totals?["calls"] as? Int == nil ? nil : totals
        }
        #expect(totals["calls"] as? Int == 1 && totals["failures"] as? Int == 0, "only the call Greptile answered: \(totals)")
        await stack.stop()
    }

    /// A conversation record as an export writes it.
    private static func record(_ id: String, question: String, at time: Double) -> String {
        let record: JSONValue = [
            "id": .string(id),
            "messages": [["role": "user", "content": .string(question), "timestamp": .double(time)]],
            "metadata": ["kind": "conversation", "title": .string(question)], "created_at": .double(time), "last_updated": .double(time),
        ]
        return record.jsonText()
    }

    @Test("an import names each refused line by its number in the body, blank lines counted, and an overlong line refuses only itself")
    func importLineNumbers() async throws {
        // 16 MiB in one request may take longer than the default 30 s to arrive on a loaded machine.
        let stack = try await FaultStack.start(workerArguments: ["--request-read-timeout", "300"])
        let now = Date().timeIntervalSince1970.rounded()
        let overlong = String(repeating: "x", count: SessionLimits.default.maxBodyBytes + 1)
        let body = [
            Self.record("conv:alice:imp-1", question: "first", at: now), "", "not json", overlong, Self.record("conv:alice:imp-2", question: "last", at: now),
        ].joined(separator: "\n")
        let response = try await stack.admin().send(
            .post, "/admin/import", body: Data(body.utf8), headers: ["Content-Type": "application/x-ndjson"], timeout: .seconds(120))
        #expect(response.status == 200, "\(response.text.prefix(500))")
        let report = response.object
        #expect(report["imported"] as? Int == 2, "the line after an overlong one is imported: \(report)")
        let refused = report["refused"] as? [[String: Any]] ?? []
        #expect(refused.compactMap { $0["line"] as? Int } == [3, 4], "\(refused)")
        #expect((refused.last?["reason"] as? String)?.contains("longer than") == true, "\(refused)")
        #expect(try await stack.history("conv:alice:imp-2").data.map(\.content) == ["last"])
        await stack.stop()
    }

    @Test(
        "an operator's export holds every stored conversation, those written through the host API with or without a principal too, and imports back byte for byte"
    )
    func exportHoldsEverything() async throws {
        let stack = try await FaultStack.start()
        let host = stack.host.client()
        #expect(
            try await host.send(.post, "/sessions/seed-plain/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "plain"))).status
                == 200)
        #expect(
            try await host.send(
                .post, "/sessions/seed-carol/update", json: SessionUpdate(.appendMessage(MessageInput(role: .user, content: "carol's")), principal: "carol")
            ).status == 200)
        let alice = try await stack.client(TeamKeys.alice)
        _ = try await alice.ask("Where is routing?", in: "mine")
        let export = try await stack.admin().send(.get, "/admin/export")
        let lines = export.text.split(separator: "\n").map(String.init)
        let ids = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["id"] as? String }
        #expect(Set(ids) == ["seed-plain", "seed-carol", "conv:alice:mine"], "every conversation, and none of the worker's bookkeeping: \(ids)")

        let other = try await FaultStack.start()
        let imported = try await other.admin().send(.post, "/admin/import", body: export.body, headers: ["Content-Type": "application/x-ndjson"])
        #expect(imported.object["imported"] as? Int == 3, "\(imported.text)")
        let again = try await other.admin().send(.get, "/admin/export")
        #expect(again.text == export.text, "the records round-trip byte for byte")
        await other.stop()
        await stack.stop()
    }

    @Test("an MCP session is in use while a call of it runs, however much longer than its lifetime the call takes")
    func sessionInUseOutlivesItsLifetime() async throws {
        // A lifetime a loaded machine still keeps between two requests, and a call three times longer.
        let stack = try await FaultStack.start(
            hostArguments: ["--expiry-interval", "0.2"], workerArguments: ["--session-lifetime", "10", "--upstream-timeout", "90"])
        let alice = try await stack.client(TeamKeys.alice)
        try await stack.delayNext("/v2/repositories", milliseconds: 25_000)
        _ = try await alice.answer("get_repository_info", ["remote": "github", "repository": "acme/widgets", "branch": "main"])
        let next = try await alice.post(#"{"jsonrpc":"2.0","id":99,"method":"tools/list"}"#)
        #expect(next.status == 200, "the session's next request after a call longer than its lifetime: \(next.text.prefix(300))")
        // Unused, it still ends at its lifetime (asked less often than that, or asking keeps it in use).
        try await eventually("the unused session expired", timeout: .seconds(90), every: .seconds(12)) {
            try await alice.post(#"{"jsonrpc":"2.0","id":100,"method":"tools/list"}"#).status == 404
        }
        await stack.stop()
    }

    @Test("a conversation whose retention is shorter than a turn is kept whole while the turn runs", arguments: StorageBackend.allCases)
    func conversationInUseIsNotSwept(backend: StorageBackend) async throws {
        // A retention a loaded machine still keeps between two turns, and a turn three times longer.
        let stack = try await FaultStack.start(backend, hostArguments: ["--retention", "10", "--expiry-interval", "0.2"])
        let alice = try await stack.client(TeamKeys.alice)
        _ = try await alice.ask("First question", in: "long")
        try await stack.delayNext("/v2/query", milliseconds: 25_000)
        _ = try await alice.ask("Second question", in: "long")
        let stored = try await stack.history("conv:alice:long")
        #expect(
            stored.data.map(\.content).filter { !$0.hasPrefix("Answer") } == ["First question", "Second question"],
            "\(backend): the first exchange is still there: \(stored.data.map(\.content))")
        #expect(stored.metadata["title"]?.stringValue == "First question")
        // Unused, it still expires at its retention.
        try await eventually("the unused conversation expired", timeout: .seconds(90)) { try await stack.history("conv:alice:long").data.isEmpty }
        await stack.stop()
    }
}

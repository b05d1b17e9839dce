import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

extension MCPTestClient {
    /// A tool's structured answer, failing the test on an `isError` result.
    func answer(_ name: String, _ arguments: [String: Any]) async throws -> [String: Any] {
        let result = try await callTool(name, arguments)
        guard !result.isError else { throw ServiceProcess.Failure(description: "\(name) failed: \(result.text)") }
        return result.structured
    }

    /// A tool's `isError` sentence, failing the test when the call succeeded.
    func refusal(_ name: String, _ arguments: [String: Any]) async throws -> String {
        let result = try await callTool(name, arguments)
        guard result.isError else { throw ServiceProcess.Failure(description: "\(name) succeeded: \(result.text)") }
        return result.text
    }

    /// `resources/read` of `uri`: the reply (a result or an error).
    func readResource(_ uri: String) async throws -> [String: Any] {
        try await request("resources/read", ["uri": uri])
    }
}

@Suite("Conversations a team can find, share and account for")
struct TeamTests {
    static let gadgets = ["remote": "github", "repository": "acme/r1"]

    @Test("the official Python client finds a restarted client's conversations as resources, page by page, in both protocol families")
    func resourcesThroughTheSDK() async throws {
        let stack = try await WorkerStack.start(workerArguments: ["--resource-page-size", "2"], workerEnvironment: TeamKeys.environment)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Interop/mcp_resources.py").path
        // auto: the client discovers the server (server/discover) and settles on 2026-07-28.
        for (mode, key, prefix) in [("legacy", TeamKeys.alice, "legacy"), ("auto", TeamKeys.bob, "modern")] {
            let directory = TemporaryDirectory("resources")
            let python = try ServiceProcess(
                executable: "/usr/bin/env",
                arguments: ["python3", "-u", script, "--worker", stack.worker.base, "--mode", mode, "--api-key", key, "--prefix", prefix],
                logPath: directory.file("resources.log"))
            #expect(try await python.waitForExit(timeout: .seconds(120)) == 0, "\(mode): \(python.log)")
            let report = (try? JSONSerialization.jsonObject(with: Data((python.log.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
            #expect(report["ok"] as? Bool == true, "\(mode): \(python.log)")
            #expect(report["protocol_version"] as? String == (mode == "legacy" ? "2025-11-25" : "2026-07-28"))
            let pages = report["pages"] as? [[String]] ?? []
            #expect(pages.map(\.count) == [2, 1], "\(mode): two pages of a page size of 2: \(pages)")
            #expect(pages.flatMap { $0 } == (1...3).reversed().map { "conversation://\(prefix)-\($0)" }, "\(mode): newest first, only the caller's")
            #expect(
                report["titles"] as? [String] == ["What tests cover the parser?", "Where are requests parsed?", "How is routing done in \(prefix)?"])
            #expect(Set(report["mime_types"] as? [String] ?? []) == ["text/markdown"])
            let markdown = report["markdown"] as? String ?? ""
            #expect(markdown.hasPrefix("# Where are requests parsed?\n"), "\(markdown.prefix(200))")
            #expect(
                markdown.contains("## Question 1\n\nWhere are requests parsed?") && markdown.contains("### Answer\n\nAnswer to 'Where are requests parsed?'"))
            #expect(markdown.contains("`acme/widgets`"))
            #expect(report["json_session_id"] as? String == "\(prefix)-2")
            #expect(report["json_roles"] as? [String] == ["user", "assistant"])
            #expect(report["templates"] as? [String] == ["conversation://{session_id}"])
            #expect(report["missing"] as? Int == -32002, "\(mode): a URI that names nothing is 'resource not found'")
        }
        await stack.stop()
    }

    @Test("list_conversations finds past threads by repository and by words in their questions")
    func findingThreads() async throws {
        let stack = try await WorkerStack.start(workerEnvironment: TeamKeys.environment)
        try await stack.standIn.control(["indexed": ["github:main:acme/r1"]])
        var alice = try await stack.session(apiKey: TeamKeys.alice)
        _ = try await alice.ask("How does the router match paths?", in: "router")
        _ = try await alice.answer(
            "query_repository", ["query": "Where is the gadget cache?", "repositories": [Self.gadgets], "session_id": "cache", "genius": false])
        _ = try await alice.ask("Which parser handles JSON?", in: "parser")
        _ = try await alice.ask("And which one handles YAML?", in: "parser")
        let all = try await alice.answer("list_conversations", [:])
        let listed = all["conversations"] as? [[String: Any]] ?? []
        #expect(listed.compactMap { $0["session_id"] as? String } == ["parser", "cache", "router"], "newest first: \(listed)")
        #expect(listed.first?["title"] as? String == "Which parser handles JSON?" && listed.first?["turns"] as? Int == 2)
        #expect(listed.first?["uri"] as? String == "conversation://parser")
        let gadgets = try await alice.answer("list_conversations", ["repository": "acme/r1"])
        #expect((gadgets["conversations"] as? [[String: Any]])?.compactMap { $0["session_id"] as? String } == ["cache"])
        let yaml = try await alice.answer("list_conversations", ["query": "yaml"])
        #expect((yaml["conversations"] as? [[String: Any]])?.compactMap { $0["session_id"] as? String } == ["parser"], "any of its questions")
        #expect(try await alice.answer("list_conversations", ["limit": 1])["count"] as? Int == 1)
        #expect(try await alice.refusal("list_conversations", ["limit": 0]).contains("limit must be from 1 to 100"))
        let bob = try await stack.session(apiKey: TeamKeys.bob)
        #expect(try await bob.answer("list_conversations", [:])["count"] as? Int == 0, "alice's threads are alice's")
        // The thread found continues where it was.
        #expect(try await alice.ask("Is that fast?", in: "router").contains("after 1 earlier questions"))
        alice.sessionID = nil
        await stack.stop()
    }

    @Test("sharing: read only, then read and continue; revoked at once; refusals never tell another's conversation from none")
    func sharing() async throws {
        let stack = try await WorkerStack.start(workerEnvironment: TeamKeys.environment)
        let alice = try await stack.session(apiKey: TeamKeys.alice)
        let bob = try await stack.session(apiKey: TeamKeys.bob)
        _ = try await alice.ask("How are sessions stored?", in: "storage")

        let shared = try await alice.answer("share_conversation", ["session_id": "storage", "principal": "bob"])
        let theirs = try #require(shared["their_session_id"] as? String)
        #expect(shared["access"] as? String == "read")
        let listed = (try await bob.answer("list_conversations", [:])["conversations"] as? [[String: Any]]) ?? []
        #expect(listed.count == 1)
        #expect(listed.first?["session_id"] as? String == theirs && listed.first?["owner"] as? String == "alice")
        #expect(listed.first?["access"] as? String == "read" && listed.first?["title"] as? String == "How are sessions stored?")
        let read = try await bob.readResource("conversation://\(theirs)")
        let contents = ((read["result"] as? [String: Any])?["contents"] as? [[String: Any]]) ?? []
        #expect((contents.first?["text"] as? String)?.contains("shared by alice (read)") == true, "\(read)")
        #expect(
            try await bob.refusal("query_repository", ["query": "more?", "repositories": [WorkerStack.repository], "session_id": theirs])
                .contains("read only"))

        _ = try await alice.answer("share_conversation", ["session_id": "storage", "principal": "bob", "access": "continue"])
        #expect(try await bob.ask("And how are they expired?", in: theirs).contains("after 1 earlier questions"), "bob continues alice's thread")
        let stored = try await stack.host!.client().send(.get, "/sessions/conv:alice:storage/history").decode(HostAPI.History.self)
        #expect(stored.data.map(\.content).filter { !$0.hasPrefix("Answer") } == ["How are sessions stored?", "And how are they expired?"])
        #expect(try await alice.ask("Thanks, bob?", in: "storage").contains("after 2 earlier questions"), "alice sees bob's turn")

        let revoked = try await alice.answer("unshare_conversation", ["session_id": "storage", "principal": "bob"])
        #expect(revoked["was_shared"] as? Bool == true)
        #expect(try await bob.answer("list_conversations", [:])["count"] as? Int == 0)
        let gone = try await bob.readResource("conversation://\(theirs)")
        let missing = try await bob.readResource("conversation://never-there")
        #expect((gone["error"] as? [String: Any])?["code"] as? Int == -32002)
        #expect(
            (gone["error"] as? [String: Any])?["message"] as? String == "Resource not found: conversation://\(theirs)",
            "a revoked share reads as nothing at all")
        #expect((missing["error"] as? [String: Any])?["code"] as? Int == -32002)
        #expect(
            try await bob.refusal("query_repository", ["query": "?", "repositories": [WorkerStack.repository], "session_id": theirs])
                .contains("no longer shared"))

        // Nothing of alice's can be named from bob's side, and refusals read alike.
        let notHis = try await bob.refusal("share_conversation", ["session_id": "storage", "principal": "alice"])
        let none = try await bob.refusal("share_conversation", ["session_id": "nothing-here", "principal": "alice"])
        #expect(notHis == none.replacingOccurrences(of: "nothing-here", with: "storage"), "\(notHis) / \(none)")
        let hisView = try await bob.readResource("conversation://storage")
        #expect((hisView["error"] as? [String: Any])?["code"] as? Int == -32002, "bob's conversation://storage is bob's, and there is none")
        #expect(try await alice.refusal("share_conversation", ["session_id": "storage", "principal": "carol"]).contains("no principal named 'carol'"))
        #expect(try await alice.refusal("share_conversation", ["session_id": "storage", "principal": "alice"]).contains("yours already"))
        #expect(
            try await alice.refusal("share_conversation", ["session_id": "storage", "principal": "bob", "access": "own"]).contains(
                "access must be read or continue"))
        await stack.stop()
    }
}

@Suite("Usage per principal: counted by the workers, kept by the hosts, read as JSON, as a page and in /metrics")
struct UsageTests {
    @Test("the figures match the load that made them, whichever worker counted it; a client sees only its own")
    func usageMatchesTheLoad() async throws {
        let stack = try await WorkerStack.start(workers: 2, workerEnvironment: TeamKeys.environment)
        var alice = try await stack.session(apiKey: TeamKeys.alice)
        var aliceElsewhere = alice
        aliceElsewhere.base = stack.workers[1].base
        var bob = MCPTestClient(base: stack.workers[1].base, apiKey: TeamKeys.bob)
        try await bob.initialize()
        // alice: three turns in two conversations, a status, a failure; bob: one search.
        _ = try await alice.ask("first?", in: "one")
        _ = try await alice.ask("second?", in: "one")
        _ = try await alice.answer("get_repository_info", WorkerStack.repository)
        _ = try await alice.refusal("get_repository_info", ["remote": "github", "repository": "octo/missing"])
        _ = try await alice.callTool(
            "query_repository", ["query": "third?", "repositories": [WorkerStack.repository], "session_id": "two"], via: stack.workers[1].base)
        _ = try await alice.answer("list_conversations", [:])
        _ = try await bob.answer("search_repository", ["query": "router", "repositories": [WorkerStack.repository]])

        let operatorView = TeamKeys.client(stack.workers[1].base, key: TeamKeys.admin)
        func totals(_ report: [String: Any], _ principal: String) -> [String: Any] {
            let principals = report["principals"] as? [[String: Any]] ?? []
            return principals.first { $0["principal"] as? String == principal }?["totals"] as? [String: Any] ?? [:]
        }
        // Each worker writes its counts within a second; the hosts add them up.
        let report = try await eventually("both workers' counts reached the hosts") { () -> [String: Any]? in
            let report = try await operatorView.send(.get, "/admin/usage").object
            return totals(report, "alice")["calls"] as? Int == 5 ? report : nil
        }
        let aliceTotals = totals(report, "alice")
        #expect(aliceTotals["failures"] as? Int == 1 && aliceTotals["turns"] as? Int == 3 && aliceTotals["conversations"] as? Int == 2, "\(aliceTotals)")
        #expect((aliceTotals["upstream_seconds"] as? Double ?? -1) >= 0)
        let bobTotals = totals(report, "bob")
        #expect(bobTotals["calls"] as? Int == 1 && bobTotals["failures"] as? Int == 0 && bobTotals["turns"] as? Int == 0, "\(bobTotals)")
        let today = ((report["principals"] as? [[String: Any]])?.first?["days"] as? [[String: Any]])?.first?["day"] as? String
        #expect(today == report["to"] as? String, "the calls are today's")

        let own = try await TeamKeys.client(stack.workers[0].base, key: TeamKeys.bob).send(.get, "/admin/usage").object
        #expect((own["principals"] as? [[String: Any]])?.compactMap { $0["principal"] as? String } == ["bob"], "a client sees only its own")
        #expect(try await TeamKeys.client(stack.workers[0].base, key: TeamKeys.bob).send(.get, "/admin/usage?principal=alice").status == 403)

        // /metrics: per principal, with a bounded set of labels.
        var counted = 0.0
        for worker in stack.workers {
            let metrics = try await JSONClient(base: worker.base).send(.get, "/metrics").text
            counted += metric(metrics, "worker_principal_calls_total", labels: #"principal="alice""#) ?? 0
            #expect(metric(metrics, "worker_principal_calls_total", labels: #"principal="carol""#) == nil)
        }
        #expect(counted == 5)
        alice.sessionID = nil
        await stack.stop()
    }

    @Test("the usage page, in a real browser: the table shows the figures, the chart draws the day's bar")
    func usagePageInABrowser() async throws {
        let stack = try await WorkerStack.start(workerEnvironment: TeamKeys.environment)
        let alice = try await stack.session(apiKey: TeamKeys.alice)
        for index in 0..<4 { _ = try await alice.ask("question \(index)?", in: "page-\(index % 2)") }
        _ = try await alice.refusal("get_repository_info", ["remote": "github", "repository": "octo/missing"])
        let bob = try await stack.session(apiKey: TeamKeys.bob)
        _ = try await bob.answer("get_repository_info", WorkerStack.repository)

        let directory = TemporaryDirectory("browser")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/browser_check.py").path
        let screenshot = directory.file("usage.png")
        let browser = try ServiceProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", script, "--url", "\(stack.worker.base)/admin/usage.html", "--key", TeamKeys.admin, "--screenshot", screenshot],
            logPath: directory.file("browser.log"))
        #expect(try await browser.waitForExit(timeout: .seconds(180)) == 0, "\(browser.log.suffix(2000))")
        let report = (try? JSONSerialization.jsonObject(with: Data((browser.log.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
        #expect(report["ok"] as? Bool == true, "\(browser.log.suffix(2000))")
        let dom = report["dom"] as? String ?? ""
        func cell(_ principal: String, _ column: String) -> String? {
            guard let row = dom.range(of: #"<tr data-principal="\#(principal)">"#) else { return nil }
            let rest = dom[row.upperBound...]
            guard let start = rest.range(of: #"<td class="\#(column)">"#), let end = rest[start.upperBound...].range(of: "</td>") else { return nil }
            return String(rest[start.upperBound..<end.lowerBound])
        }
        #expect(cell("alice", "calls") == "5" && cell("alice", "failures") == "1", "\(dom.prefix(3000))")
        #expect(cell("alice", "turns") == "4" && cell("alice", "conversations") == "2")
        #expect(cell("bob", "calls") == "1" && cell("bob", "turns") == "0", "\(dom.prefix(3000))")
        #expect(dom.contains(#"data-calls="5""#), "the chart's bar for today holds alice's five calls")
        #expect(report["width"] as? Int == 1280 && report["height"] as? Int == 900)
        #expect((report["colored_pixels"] as? Int ?? 0) > 100, "the bars are drawn: \(report["colored_pixels"] ?? "none")")
        if ProcessInfo.processInfo.environment["KEEP_TEST_FILES"] != nil { print("usage page screenshot: \(screenshot)") }
        // A person's browser: asked for the key (Basic), then sent it as the password.
        let asked = try await JSONClient(base: stack.worker.base).send(.get, "/admin/usage.html")
        #expect(asked.status == 401 && asked.headers["WWW-Authenticate"]?.hasPrefix("Basic ") == true)
        let typed = Data("anyone:\(TeamKeys.admin)".utf8).base64EncodedString()
        let page = try await JSONClient(base: stack.worker.base, headers: ["Authorization": "Basic \(typed)"]).send(.get, "/admin/usage.html")
        #expect(page.status == 200 && page.headers["Content-Type"] == "text/html; charset=utf-8" && page.text.contains(#"data-principal="alice""#))
        let wrong = Data("anyone:not-the-key-at-all-0000".utf8).base64EncodedString()
        #expect(try await JSONClient(base: stack.worker.base, headers: ["Authorization": "Basic \(wrong)"]).send(.get, "/admin/usage.html").status == 401)
        await stack.stop()
    }
}

@Suite("Listing conversations over many hosts")
struct ManyHostListingTests {
    /// Every page of `resources/list`, in order.
    static func allPages(_ client: MCPTestClient) async throws -> [[String]] {
        var pages: [[String]] = []
        var cursor: String?
        repeat {
            let reply = try await client.request("resources/list", cursor.map { ["cursor": $0] } ?? [:])
            let result = reply["result"] as? [String: Any] ?? [:]
            pages.append((result["resources"] as? [[String: Any]] ?? []).compactMap { $0["uri"] as? String })
            cursor = result["nextCursor"] as? String
        } while cursor != nil && pages.count < 20
        return pages
    }

    @Test("conversations spread over three hosts' own files list newest first, page by page, and on one database the same", arguments: StorageBackend.allCases)
    func acrossHosts(backend: StorageBackend) async throws {
        let arguments = ["--resource-page-size", "2"]
        let keys = TemporaryDirectory("keys")
        try "alice:\(TeamKeys.alice)\nbob:\(TeamKeys.bob)\n".write(toFile: keys.file("api-keys"), atomically: true, encoding: .utf8)
        let workerBase: String
        let stop: @Sendable () async -> Void
        switch backend {
        case .sqlite:
            let stack = try await RingStack.start(hosts: 3, workers: 1, workerArguments: arguments, workerEnvironment: TeamKeys.environment)
            workerBase = stack.workers[0].base
            stop = { await stack.stop() }
        case .postgres:
            // SharedStack's workers take no environment of their own: the keys come as a file.
            let stack = try await SharedStack.start(hosts: 3, workers: 1, workerArguments: arguments + ["--api-keys-file", keys.file("api-keys")])
            workerBase = stack.workers[0].base
            stop = { await stack.stop() }
        }
        var alice = MCPTestClient(base: workerBase, apiKey: TeamKeys.alice)
        try await alice.initialize()
        for index in 0..<5 { _ = try await alice.ask("question \(index)", in: "spread-\(index)") }
        let pages = try await Self.allPages(alice)
        #expect(pages.map(\.count) == [2, 2, 1], "\(backend): \(pages)")
        #expect(pages.flatMap { $0 } == (0..<5).reversed().map { "conversation://spread-\($0)" }, "\(backend): newest first across hosts")
        alice.sessionID = nil
        await stop()
    }

}

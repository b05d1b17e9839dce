import Foundation
import SessionModel
import Testing

@testable import MCPWorker

@Suite("Tasks: a task's life as a value, its outcome in each family, and what a client reads")
struct TaskStateTests {
    let policy = TaskPolicy()

    @Test("a runner's lease: nothing to do while it holds; the next attempt after it lapses; failed after too many lost runners")
    func steps() {
        let created = TaskState.created(now: 1_000, lease: 15, message: "working")
        #expect(created.attempt == 1 && created.status == .working && created.leaseUntil == 1_015)
        #expect(created.step(now: 1_014.9, maxAttempts: 3) == .none)
        #expect(created.step(now: 1_015, maxAttempts: 3) == .takeOver(attempt: 2))
        // A worker that runs this attempt itself never takes it from itself, however late its renewal.
        #expect(created.step(now: 1_015, maxAttempts: 3, runningHere: true) == .none)
        let second = created.claimed(by: 2, now: 1_020, lease: 15)
        #expect(second.attempt == 2 && second.leaseUntil == 1_035)
        #expect(second.renewed(now: 1_030, lease: 15).step(now: 1_040, maxAttempts: 3) == .none)
        let third = second.claimed(by: 3, now: 1_040, lease: 15)
        #expect(third.step(now: 1_060, maxAttempts: 3) == .giveUp)
        // A stored answer gets more runners to write its turn (nothing is asked again), then ends.
        #expect(third.answered().step(now: 1_060, maxAttempts: 3) == .takeOver(attempt: 4))
        #expect(third.answered().claimed(by: 6, now: 1_060, lease: 15).step(now: 1_080, maxAttempts: 3) == .giveUp)
        // Given back at shutdown: taken over at the next look.
        #expect(created.released().step(now: 1_000.5, maxAttempts: 3) == .takeOver(attempt: 2))
        // Final states are final.
        for status in [TaskState.Status.completed, .failed, .cancelled] {
            let ended = created.ended(status, message: nil, now: 1_001)
            #expect(ended.status.isTerminal && ended.step(now: 9_999, maxAttempts: 3) == .none)
        }
    }

    @Test("a write changes only what it changed: a renewal and an answer of one runner never undo each other")
    func patches() {
        let state = TaskState.created(now: 1_000, lease: 15, message: "working")
        #expect(state.renewed(now: 1_005, lease: 15).patch(from: state) == ["lease_until": .double(1_020)])
        #expect(state.answered().patch(from: state) == ["answered_by": .int(1)])
        let ended = state.ended(.cancelled, message: "cancelled by request", now: 1_002)
        #expect(
            ended.patch(from: state) == [
                "status": "cancelled", "status_message": "cancelled by request", "changed_at": .double(1_002), "lease_until": .double(0),
            ])
        // The fields round-trip, and a runner's writes expect its attempt.
        #expect(TaskState(ended.fields) == ended)
        #expect(TaskState(state.answered().fields)?.answeredBy == 1)
        #expect(state.runnerExpects == ["status": "working", "attempt": .int(1)])
        #expect(TaskState(["status": "working"]) == nil)
    }

    @Test("an isError result ends a 2025-11-25 task failed and an extension task completed; a JSON-RPC error fails both")
    func outcomes() {
        let refused = TaskOutcome.result(.failure("repository not found"))
        #expect(refused.status(in: .experimental) == .failed)
        #expect(refused.status(in: .tasksExtension) == .completed)
        let answered = TaskOutcome.result(.success(["message": "hi", "sources": [], "_session_id": "s"]))
        #expect(answered.status(in: .experimental) == .completed && answered.status(in: .tasksExtension) == .completed)
        let error = TaskOutcome.error(code: -32603, message: "lost")
        #expect(error.status(in: .experimental) == .failed && error.status(in: .tasksExtension) == .failed)
        for outcome in [refused, answered, error] {
            #expect(TaskOutcome(outcome.jsonValue) == outcome)
        }
        var linked = ToolResult.success(["results": [], "count": 0])
        linked.links = [["type": "resource_link", "uri": "https://github.com/acme/widgets/blob/main/a.swift", "name": "a.swift"]]
        #expect(TaskOutcome(TaskOutcome.result(linked).jsonValue) == .result(linked))
    }

    @Test("a requested ttl is granted within bounds; none asked for gets the default")
    func ttl() {
        #expect(policy.ttl(requestedMilliseconds: nil) == 3_600)
        #expect(policy.ttl(requestedMilliseconds: 60_000) == 60)
        #expect(policy.ttl(requestedMilliseconds: 10) == 1)
        #expect(policy.ttl(requestedMilliseconds: 1e12) == 86_400)
        #expect(policy.ttl(requestedMilliseconds: .infinity) == 3_600)
    }

    @Test("each family's words: ttl and pollInterval, or ttlMs and pollIntervalMs; no poll interval once ended")
    func views() {
        let state = TaskState.created(now: 1_764_000_000, lease: 15, message: "Greptile is working on it")
        let view = TaskView(id: "0123456789abcdef0123456789abcdef", state: state, createdAt: 1_764_000_000, ttl: 60, pollInterval: 1)
        let experimental = view.fields(.experimental)
        #expect(experimental["taskId"] == "0123456789abcdef0123456789abcdef")
        #expect(experimental["status"] == "working" && experimental["statusMessage"] == "Greptile is working on it")
        #expect(experimental["ttl"] == .int(60_000) && experimental["pollInterval"] == .int(1_000))
        #expect(experimental["createdAt"] == "2025-11-24T16:00:00.000Z" && experimental["ttlMs"] == nil)
        let modern = view.fields(.tasksExtension)
        #expect(modern["ttlMs"] == .int(60_000) && modern["pollIntervalMs"] == .int(1_000) && modern["ttl"] == nil)
        let ended = TaskView(
            id: view.id, state: state.ended(.completed, message: "done", now: 1_764_000_010.5), createdAt: view.createdAt, ttl: 60, pollInterval: 1)
        #expect(ended.fields(.tasksExtension)["pollIntervalMs"] == nil)
        #expect(ended.fields(.experimental)["lastUpdatedAt"] == "2025-11-24T16:00:10.500Z")
    }

    @Test("the same question is the same principal, tool and arguments, however its answer is delivered")
    func questions() {
        let asked: JSONObject = ["query": "how?", "repositories": [["remote": "github", "repository": "acme/widgets"]], "genius": true]
        var streamed = asked
        streamed["stream"] = true
        streamed["timeout"] = 30
        let digest = TaskStore.questionDigest(principal: "alice", tool: "query_repository", arguments: asked)
        #expect(digest == TaskStore.questionDigest(principal: "alice", tool: "query_repository", arguments: streamed))
        #expect(digest != TaskStore.questionDigest(principal: "bob", tool: "query_repository", arguments: asked))
        #expect(digest != TaskStore.questionDigest(principal: "alice", tool: "search_repository", arguments: asked))
        var other = asked
        other["query"] = "why?"
        #expect(digest != TaskStore.questionDigest(principal: "alice", tool: "query_repository", arguments: other))
        #expect(digest.count == 64)
    }

    @Test("an indexing task tells how far Greptile got")
    func indexingMessages() {
        #expect(
            TaskRunner.indexingMessage(["status": "processing", "filesProcessed": 412, "numFiles": 980]) == "Greptile is indexing: processing, 412 of 980 files"
        )
        #expect(TaskRunner.indexingMessage(["status": "submitted"]) == "Greptile is indexing: submitted")
    }

    @Test("a conversation's marks of tasks go a day after they were made")
    func marks() {
        let metadata: JSONObject = [
            "title": "how?", "task:old": ["outcome": "answered", "at": .double(1_000)], "task:new": ["outcome": "cancelled", "at": .double(90_000)],
            "task:odd": "x",
        ]
        #expect(Conversations.staleMarkers(in: metadata, now: 90_000) == ["task:old"])
        #expect(Conversations.staleMarkers(in: metadata, now: 80_000) == [])
    }

    @Test("sources become links to their files on GitHub or GitLab; others, and names that would steer a URL, do not")
    func links() {
        let github: JSONObject = [
            "repository": "acme/widgets", "remote": "github", "branch": "feature/x y", "filepath": "Sources/a b.swift", "linestart": 11, "lineend": 19,
            "summary": "Where routing happens",
        ]
        #expect(SourceLinks.url(of: github) == "https://github.com/acme/widgets/blob/feature/x%20y/Sources/a%20b.swift#L11-L19")
        var gitlab = github
        gitlab["remote"] = "gitlab"
        gitlab["linestart"] = .null
        #expect(SourceLinks.url(of: gitlab) == "https://gitlab.com/acme/widgets/-/blob/feature/x%20y/Sources/a%20b.swift")
        var elsewhere = github
        elsewhere["remote"] = "bitbucket"
        var steering = github
        steering["repository"] = "acme/../../evil"
        #expect(SourceLinks.url(of: elsewhere) == nil && SourceLinks.url(of: steering) == nil)
        let links = SourceLinks.links(from: [.object(github), .object(github), .object(elsewhere), "not an object"])
        #expect(links.count == 1)
        #expect(links.first?.objectValue?["type"] == "resource_link" && links.first?.objectValue?["name"] == "Sources/a b.swift")
        #expect(links.first?.objectValue?["description"] == "Where routing happens")
    }

    @Test("every tool declares the schema of its structured result; the long ones may run as tasks under 2025-11-25")
    func listings() throws {
        for declaration in ToolCatalog.all {
            #expect(declaration.listing.objectValue?["outputSchema"]?.objectValue?["type"] == "object", "\(declaration.name)")
        }
        let tools = try #require(ToolCatalog.listingWithTasks.arrayValue)
        for tool in tools {
            let name = tool.objectValue?["name"]?.stringValue ?? ""
            let support = tool.objectValue?["execution"]?.objectValue?["taskSupport"]?.stringValue
            #expect(support == (TaskRecord.tools.contains(name) ? "optional" : "forbidden"), "\(name)")
        }
        #expect(ToolCatalog.listing.arrayValue?.allSatisfy { $0.objectValue?["execution"] == nil } == true)
    }
}

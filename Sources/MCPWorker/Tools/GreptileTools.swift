import CurlHTTP
import Foundation
import Greptile
import HTTPServing
import Logging
import Metrics
import ServerRuntime
import SessionClient
import SessionModel

/// The four tools of the original greptile-mcp server, with its names and parameters.
struct GreptileTools: Sendable {
    let greptile: GreptileClient
    let github: GitHubClient
    let conversations: Conversations
    /// Where each principal's calls, turns and upstream time are counted.
    let usage: UsageLedger
    let logger: Logger
    let clock: ServerClock

    /// What a call waits for before its first side effect: the check of its transport session
    /// when that runs beside it (nothing, when it ran before).
    typealias Admission = @Sendable () async throws -> Void

    /// Runs a tool: its arguments checked by its declaration (`ToolCatalog`), then the tool.
    /// Every failure becomes an `isError` result with a sentence a person can act on
    /// (`ToolFailure`); an unknown tool is a protocol error.
    func call(
        _ name: String, arguments: JSONObject?, principal: String, progress: (any ProgressReporter)? = nil, admission: Admission = {},
        task: TaskTurn? = nil
    ) async throws -> ToolResult {
        guard let declaration = ToolCatalog.declaration(named: name) else {
            Metrics.Counter(label: "worker_tool_calls_total", dimensions: [("tool", "unknown"), ("outcome", "unknown_tool")]).increment()
            throw RPCError.invalidParams("Unknown tool: \(name.prefix(100)); the tools are \(ToolCatalog.names.joined(separator: ", "))")
        }
        let start = clock.now
        let outcome: String
        var failure: ToolFailure?
        defer {
            let elapsed = clock.elapsed(since: start)
            Metrics.Counter(label: "worker_tool_calls_total", dimensions: [("tool", name), ("outcome", outcome)]).increment()
            Metrics.Timer(label: "worker_tool_duration_seconds", dimensions: [("tool", name)], preferredDisplayUnit: .seconds)
                .recordNanoseconds(elapsed.nanosecondsValue)
            if declaration.callsUpstream, failure?.countsAsUsage ?? true {
                usage.recordCall(principal: principal, failed: outcome != "ok", milliseconds: elapsed.secondsValue * 1000)
            }
        }
        do {
            let input = try declaration.check(arguments)
            // Only a conversation's history is read before the session is known to be good.
            if name != ToolCatalog.queryRepository.name { try await admission() }
            let value = try await run(declaration.name, input, principal: principal, progress: progress, admission: admission, task: task)
            outcome = "ok"
            return .success(value, links: SourceLinks.links(from: Self.sources(of: declaration.name, in: value)))
        } catch let refusal as SessionRefusal {
            // Not the tool's failure: the request's session is not one to serve.
            outcome = "session_refused"
            throw refusal
        } catch {
            let caught = ToolFailure(error)
            failure = caught
            outcome = caught.outcome
            if let level = caught.logLevel {
                logger.log(level: level, "tool failed", metadata: ["tool": "\(name)", "outcome": "\(caught.outcome)", "error": "\(error)"])
            }
            switch caught {
            case .cancelled: throw CancellationError()
            case .protocolError(let error): throw error
            default: return .failure(caught.message(tool: name) ?? "\(name) failed")
            }
        }
    }

    /// The tool itself, given arguments its declaration checked.
    private func run(
        _ name: String, _ input: ToolInput, principal: String, progress: (any ProgressReporter)?, admission: Admission, task: TaskTurn?
    ) async throws -> JSONValue {
        switch name {
        case ToolCatalog.indexRepository.name: try await indexRepository(input)
        case ToolCatalog.queryRepository.name:
            try await queryRepository(input, principal: principal, progress: progress, admission: admission, task: task)
        case ToolCatalog.searchRepository.name: try await searchRepository(input, principal: principal)
        case ToolCatalog.repositoryInfo.name: try await repositoryInfo(input)
        case ToolCatalog.listConversations.name: try await listConversations(input, principal: principal)
        case ToolCatalog.shareConversation.name: try await shareConversation(input, principal: principal)
        default: try await unshareConversation(input, principal: principal)
        }
    }

    /// The sources a tool's result names (an answer's, a search's results).
    static func sources(of tool: String, in value: JSONValue) -> [JSONValue] {
        switch tool {
        case ToolCatalog.queryRepository.name: value.objectValue?["sources"]?.arrayValue ?? []
        case ToolCatalog.searchRepository.name: value.objectValue?["results"]?.arrayValue ?? []
        default: []
        }
    }

    // MARK: The tools

    private func indexRepository(_ input: ToolInput) async throws -> JSONValue {
        let repository = try await resolve(input.repository)
        var answer = try await greptile.index(IndexRequest(repository: repository, reload: input.flag("reload"), notify: input.flag("notify")))
        answer["repository"] = .string(repository.repository)
        answer["remote"] = .string(repository.remote)
        answer["branch"] = .string(repository.branch)
        return .object(answer)
    }

    private func listConversations(_ input: ToolInput, principal: String) async throws -> JSONValue {
        let entries = try await conversations.catalog.find(
            principal: principal, repository: input.optionalString("repository"), query: input.optionalString("query"), limit: input.whole("limit"))
        let listed: [JSONValue] = entries.map { entry in
            var item: JSONObject = [
                "session_id": .string(entry.sessionID), "title": .string(entry.summary.title),
                "repositories": .array(entry.summary.repositories.map(JSONValue.string)), "turns": .int(Int64(entry.summary.turns)),
                "last_updated": .string(ConversationCatalog.iso8601(entry.summary.lastUpdated)), "uri": .string(ConversationResources.uri(of: entry.sessionID)),
            ]
            if entry.access != .owner {
                item["owner"] = .string(entry.owner)
                item["access"] = .string(entry.access.rawValue)
            }
            return .object(item)
        }
        return .object(["conversations": .array(listed), "count": .int(Int64(listed.count))])
    }

    private func shareConversation(_ input: ToolInput, principal: String) async throws -> JSONValue {
        let sessionID = input.string("session_id")
        let other = input.string("principal")
        let access: ConversationCatalog.Access = input.string("access") == "continue" ? .continue : .read
        let theirs = try await conversations.catalog.share(principal: principal, sessionID: sessionID, with: other, access: access)
        return .object([
            "session_id": .string(sessionID), "shared_with": .string(other), "access": .string(access.rawValue), "their_session_id": .string(theirs),
        ])
    }

    private func unshareConversation(_ input: ToolInput, principal: String) async throws -> JSONValue {
        let sessionID = input.string("session_id")
        let other = input.string("principal")
        let wasShared = try await conversations.catalog.unshare(principal: principal, sessionID: sessionID, with: other)
        return .object(["session_id": .string(sessionID), "principal": .string(other), "was_shared": .bool(wasShared)])
    }

    private func repositoryInfo(_ input: ToolInput) async throws -> JSONValue {
        let repository = try await resolve(input.repository)
        return .object(try await greptile.status(of: repository))
    }

    private func searchRepository(_ input: ToolInput, principal: String) async throws -> JSONValue {
        let repositories = try await resolve(input.repositories("repositories"))
        let sessionID = input.optionalString("session_id").map { Conversations.upstreamSessionID(principal: principal, sessionID: $0) }
        let results = try await greptile.search(SearchRequest(query: input.string("query"), repositories: repositories, sessionId: sessionID))
        return .object(["results": .array(results), "count": .int(Int64(results.count))])
    }

    private func queryRepository(
        _ input: ToolInput, principal: String, progress: (any ProgressReporter)?, admission: Admission, task: TaskTurn?
    ) async throws -> JSONValue {
        let query = input.string("query")
        let sessionID = input.optionalString("session_id") ?? task?.sessionID ?? Conversations.newSessionID()
        let stream = input.flag("stream")
        let genius = input.flag("genius")
        let timeout = input.seconds("timeout")
        let previous = input.messages("previous_messages")
        let inputs = input.repositories("repositories")

        // A plain call's answer is seen by no one before it is stored: its turn is written only
        // onto the history it was asked with, and asked again when another turn came first. A
        // streamed answer (or a task's, which is its outcome) is not asked twice.
        let conditional = !stream && progress == nil && task == nil
        var conflicts = 0
        while true {
            let askedAt = clock.wallNow
            let turn = try await conversations.begin(
                principal: principal, sessionID: sessionID, query: query, previousMessages: previous,
                conditional: conditional && conflicts < Conversations.conflictRetries)
            // Reading the history was the last thing done before the session is known to be good.
            if conflicts == 0 { try await admission() }
            let answer = {
                try await answerTurn(
                    turn, query: query, sessionID: sessionID, principal: principal, askedAt: askedAt, inputs: inputs, previous: previous,
                    stream: stream, genius: genius, timeout: timeout, progress: progress, task: task)
            }
            do {
                guard let interval = turn.keepAliveInterval else { return try await answer() }
                // Nothing in use expires: a conversation that lives less long than a call may take is
                // kept while Greptile answers and the turn is stored.
                let conversations = self.conversations
                return try await beside({ await conversations.keepInUse(turn, every: interval) }, answer)
            } catch is Conversations.TurnConflict {
                conflicts += 1
                logger.notice(
                    "the conversation changed while Greptile answered; asking again with its history",
                    metadata: ["session_id": "\(sessionID)", "remembered": "\(turn.remembered)", "conflicts": "\(conflicts)"])
            }
        }
    }

    private func answerTurn(
        _ turn: Conversations.Turn, query: String, sessionID: String, principal: String, askedAt: Double, inputs: [RepositoryInput],
        previous: [MessageInput]?, stream: Bool, genius: Bool, timeout: Duration?, progress: (any ProgressReporter)?, task: TaskTurn?
    ) async throws -> JSONValue {
        let repositories = try await resolve(inputs)
        let request = QueryRequest(
            messages: turn.messages, repositories: repositories, sessionId: turn.upstreamSessionID, stream: stream, genius: genius)
        let answer: QueryAnswer
        if stream || progress != nil {
            answer = try await streamedAnswer(request, timeout: timeout, progress: progress)
        } else {
            answer = try await greptile.query(request, timeout: timeout)
        }
        try Task.checkCancellation()
        let value: JSONValue = ["message": .string(answer.message), "sources": .array(answer.sources), "_session_id": .string(sessionID)]
        // A task's answer is its outcome before it is a turn: a later runner of the task
        // finishes this answer rather than asking again.
        try await task?.answered(value)
        try await store(
            turn, principal: principal, query: query, askedAt: askedAt, answer: answer.message, previous: previous, repositories: repositories,
            marker: task?.marker)
        return value
    }

    /// Stores an answered exchange. Once the answer is whole it is stored whole, even if the
    /// caller cancels meanwhile: the exchange is recorded completely or (cancelled before this
    /// point) not at all.
    private func store(
        _ turn: Conversations.Turn, principal: String, query: String, askedAt: Double, answer: String, previous: [MessageInput]?,
        repositories: [RepositoryRef], marker: String?
    ) async throws {
        let conversations = self.conversations
        let usage = self.usage
        try await shielded {
            try await conversations.finish(
                turn, principal: principal, query: query, askedAt: askedAt, answer: answer, previousMessages: previous,
                repositories: repositories, marker: marker)
            usage.recordTurn(principal: principal, started: turn.title != nil && turn.target.pointer == nil)
        }
    }

    // MARK: Tasks

    /// Stores the turn of a query task whose answer a runner stored before it was lost: the
    /// same exchange, once (the conversation's mark of the task decides).
    func finishTaskTurn(_ arguments: JSONObject, principal: String, answer: JSONValue, task: TaskTurn) async throws {
        let input = try ToolCatalog.queryRepository.check(arguments)
        let sessionID = input.optionalString("session_id") ?? task.sessionID
        let previous = input.messages("previous_messages")
        let query = input.string("query")
        let turn = try await conversations.begin(principal: principal, sessionID: sessionID, query: query, previousMessages: previous)
        let repositories = try await resolve(input.repositories("repositories"))
        try await store(
            turn, principal: principal, query: query, askedAt: clock.wallNow, answer: answer.objectValue?["message"]?.stringValue ?? "",
            previous: previous, repositories: repositories, marker: task.marker)
    }

    /// Greptile's indexing status of the repository an `index_repository` call names (nil:
    /// Greptile knows nothing of it).
    func indexingStatus(_ arguments: JSONObject) async throws -> JSONObject? {
        let input = try ToolCatalog.indexRepository.check(arguments)
        do {
            return try await greptile.status(of: try await resolve(input.repository))
        } catch let error as GreptileError where error.kind == .notFound {
            return nil
        }
    }

    /// Runs `work` while `companion` runs beside it, cancelling the companion when work ends.
    private func beside<T: Sendable>(_ companion: @escaping @Sendable () async -> Void, _ work: () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await companion() }
            defer { group.cancelAll() }
            return try await work()
        }
    }

    /// Reads a streamed answer chunk by chunk, reporting the text so far as it grows; the
    /// whole stream must end within the query's timeout.
    private func streamedAnswer(_ request: QueryRequest, timeout: Duration?, progress: (any ProgressReporter)?) async throws -> QueryAnswer {
        let limit = timeout ?? greptile.configuration.queryTimeout
        return try await withThrowingTaskGroup(of: QueryAnswer?.self) { group in
            group.addTask { try await self.readStream(request, progress: progress) }
            group.addTask {
                try await self.clock.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let answer = try await group.next() ?? nil else {
                throw GreptileError(.unreachable, "Greptile's streamed answer did not finish within the time limit (\(limit)); try again, or raise timeout")
            }
            return answer
        }
    }

    private func readStream(_ request: QueryRequest, progress: (any ProgressReporter)?) async throws -> QueryAnswer {
        var text = ""
        var sources: [JSONValue] = []
        var whole: QueryAnswer?
        let chunks = try await greptile.queryStream(request)
        for try await chunk in chunks {
            switch chunk {
            case .text(let piece):
                text += piece
                await progress?.report(text)
            case .citation(let citation):
                sources.append(.object(citation))
            case .answer(let answer):
                whole = answer
            case .sessionID:
                break
            }
        }
        // A transfer aborted by cancellation ends the chunk sequence early: that is no answer.
        try Task.checkCancellation()
        if var whole {
            if whole.sources.isEmpty { whole.sources = sources }
            return whole
        }
        return QueryAnswer(message: text, sources: sources)
    }

    private func resolve(_ input: RepositoryInput) async throws -> RepositoryRef {
        if let branch = input.branch {
            return RepositoryRef(remote: input.remote, repository: input.repository, branch: branch)
        }
        guard input.remote == "github" else {
            throw ToolError("branch is required for \(input.remote) repositories (only GitHub's default branch can be looked up)")
        }
        let branch = try await github.defaultBranch(of: input.repository)
        return RepositoryRef(remote: input.remote, repository: input.repository, branch: branch)
    }

    /// Resolves the branches of several repositories, a few GitHub lookups at a time.
    private func resolve(_ inputs: [RepositoryInput]) async throws -> [RepositoryRef] {
        try await withThrowingTaskGroup(of: (Int, RepositoryRef).self) { group in
            var resolved = [RepositoryRef?](repeating: nil, count: inputs.count)
            var next = 0
            func startNext() {
                guard next < inputs.count else { return }
                let index = next
                next += 1
                group.addTask { (index, try await self.resolve(inputs[index])) }
            }
            for _ in 0..<min(Self.concurrentLookups, inputs.count) { startNext() }
            while let (index, reference) = try await group.next() {
                resolved[index] = reference
                startNext()
            }
            return resolved.map { $0! }
        }
    }

    /// GitHub lookups one call runs at once.
    static let concurrentLookups = 4
}

/// What a query run as a task does besides answering: its turn is marked with the task in its
/// conversation (`marker`), goes to the conversation the task chose (`sessionID`, when the
/// call names none), and its answer is stored as the task's outcome (`answered`, a write the
/// task's runner alone can make) before the turn is.
struct TaskTurn: Sendable {
    let marker: String
    let sessionID: String
    let answered: @Sendable (JSONValue) async throws -> Void
}

/// Told the text of a streamed answer as it grows (SSE progress notifications).
protocol ProgressReporter: Sendable {
    func report(_ textSoFar: String) async
}

import CurlHTTP
import Foundation
import Greptile
import HTTPServing
import Logging
import MCP
import Metrics
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

    /// The tools that call Greptile (the others only read and write conversations).
    static let upstreamTools: Set<String> = ["index_repository", "query_repository", "search_repository", "get_repository_info"]

    static let names = [
        "index_repository", "query_repository", "search_repository", "get_repository_info", "list_conversations", "share_conversation",
        "unshare_conversation",
    ]

    /// What `tools/list` answers.
    static let definitions: [Tool] = [
        Tool(
            name: "index_repository",
            title: "Index a repository",
            description: """
                Submit a repository to Greptile for indexing, so it can be queried and searched. \
                Indexing runs in the background; check progress with get_repository_info. \
                The branch defaults to the repository's default branch (looked up on GitHub).
                """,
            inputSchema: objectSchema(
                [
                    "remote": remoteSchema,
                    "repository": repositorySchema,
                    "branch": .object(["type": "string", "description": "Branch to index; defaults to the repository's default branch."]),
                    "reload": .object(["type": "boolean", "default": true, "description": "Re-process the repository even if it was indexed before."]),
                    "notify": .object(["type": "boolean", "default": false, "description": "E-mail the account when indexing is done."]),
                ], required: ["remote", "repository"]),
            annotations: .init(title: "Index a repository", readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true)),
        Tool(
            name: "query_repository",
            title: "Ask about a codebase",
            description: """
                Ask Greptile a question in natural language about one or more indexed repositories. \
                Returns the answer, the source files it drew on, and _session_id: pass that back as \
                session_id to ask a follow-up in the same conversation (the history is kept for you).
                """,
            inputSchema: objectSchema(
                [
                    "query": .object(["type": "string", "description": "The question."]),
                    "repositories": repositoriesSchema,
                    "session_id": .object(["type": "string", "description": "Conversation to continue; a new one is started when omitted."]),
                    "stream": .object(["type": "boolean", "default": false, "description": "Stream the answer as it is written."]),
                    "genius": .object(["type": "boolean", "default": true, "description": "Slower (8-10 s more) but better answers."]),
                    "timeout": .object(["type": "number", "description": "Seconds to wait for Greptile (default 120)."]),
                    "previous_messages": .object([
                        "type": "array", "description": "Replaces the stored history of this conversation.",
                        "items": .object([
                            "type": "object", "required": ["role", "content"],
                            "properties": .object([
                                "role": .object(["type": "string", "enum": ["user", "assistant", "system"]]),
                                "content": .object(["type": "string"]),
                            ]),
                        ]),
                    ]),
                ], required: ["query", "repositories"]),
            annotations: .init(title: "Ask about a codebase", readOnlyHint: true, destructiveHint: false, openWorldHint: true)),
        Tool(
            name: "search_repository",
            title: "Search a codebase",
            description: """
                Find the files and line ranges of indexed repositories that are relevant to a query, \
                without writing an answer. Faster than query_repository.
                """,
            inputSchema: objectSchema(
                [
                    "query": .object(["type": "string", "description": "What to look for."]),
                    "repositories": repositoriesSchema,
                    "session_id": .object(["type": "string", "description": "Greptile session to associate the search with."]),
                    "genius": .object(["type": "boolean", "default": true, "description": "Accepted for compatibility with the original server."]),
                ], required: ["query", "repositories"]),
            annotations: .init(title: "Search a codebase", readOnlyHint: true, destructiveHint: false, openWorldHint: true)),
        Tool(
            name: "get_repository_info",
            title: "Repository indexing status",
            description: """
                Show a repository's indexing status in Greptile: submitted, cloning, processing, completed \
                or failed, with files processed. The branch defaults to the repository's default branch.
                """,
            inputSchema: objectSchema(
                [
                    "remote": remoteSchema, "repository": repositorySchema,
                    "branch": .object(["type": "string", "description": "Branch; defaults to the default branch."]),
                ],
                required: ["remote", "repository"]),
            annotations: .init(title: "Repository indexing status", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true)),
        Tool(
            name: "list_conversations",
            title: "Find past conversations",
            description: """
                List your past conversations with Greptile (and those shared with you), newest first, \
                optionally only those about a repository or whose questions mention some words. Pass a \
                conversation's session_id to query_repository to continue it.
                """,
            inputSchema: objectSchema(
                [
                    "repository": .object(["type": "string", "description": "Only conversations about this repository (owner/name)."]),
                    "query": .object(["type": "string", "description": "Only conversations whose questions contain these words (any case)."]),
                    "limit": .object(["type": "integer", "minimum": 1, "maximum": 100, "default": 20, "description": "Most conversations to return."]),
                ], required: []),
            annotations: .init(title: "Find past conversations", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false)),
        Tool(
            name: "share_conversation",
            title: "Share a conversation",
            description: """
                Share one of your conversations with another person on this server: read only, or read \
                and continue. They find it with list_conversations, under the session_id this returns.
                """,
            inputSchema: objectSchema(
                [
                    "session_id": .object(["type": "string", "description": "Your conversation to share."]),
                    "principal": .object(["type": "string", "description": "Who to share it with (their name on this server)."]),
                    "access": .object([
                        "type": "string", "enum": ["read", "continue"], "default": "read",
                        "description": "read: they may read it; continue: they may also ask follow-ups in it.",
                    ]),
                ], required: ["session_id", "principal"]),
            annotations: .init(title: "Share a conversation", readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false)),
        Tool(
            name: "unshare_conversation",
            title: "Stop sharing a conversation",
            description: "Stop sharing one of your conversations with someone: it leaves their list at once.",
            inputSchema: objectSchema(
                [
                    "session_id": .object(["type": "string", "description": "Your shared conversation."]),
                    "principal": .object(["type": "string", "description": "Who to stop sharing it with."]),
                ], required: ["session_id", "principal"]),
            annotations: .init(title: "Stop sharing a conversation", readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false)),
    ]

    private static let remoteSchema: Value = .object(["type": "string", "enum": ["github", "gitlab"], "description": "Where the repository is hosted."])
    private static let repositorySchema: Value = .object(["type": "string", "description": "The repository as owner/name.", "pattern": "^[^/\\s]+/[^\\s]+$"])
    private static let repositoriesSchema: Value = .object([
        "type": "array", "minItems": 1, "description": "Repositories to ask about.",
        "items": .object([
            "type": "object", "required": ["repository"],
            "properties": .object(["remote": remoteSchema, "repository": repositorySchema, "branch": .object(["type": "string"])]),
        ]),
    ])

    private static func objectSchema(_ properties: [String: Value], required: [String]) -> Value {
        .object(["type": "object", "properties": .object(properties), "required": .array(required.map(Value.string))])
    }

    /// What a call waits for before its first side effect: the check of its transport session
    /// when that runs beside it (nothing, when it ran before).
    typealias Admission = @Sendable () async throws -> Void

    /// Runs a tool; every failure becomes an `isError` result with a message a person can act on.
    func call(
        _ name: String, arguments: [String: Value]?, principal: String, progress: (any ProgressReporter)? = nil, admission: Admission = {}
    ) async throws -> CallTool.Result {
        let start = ContinuousClock.now
        let arguments = ToolArguments(arguments)
        let outcome: String
        var failure: ToolFailure?
        defer {
            let elapsed = ContinuousClock.now - start
            Metrics.Counter(label: "worker_tool_calls_total", dimensions: [("tool", name), ("outcome", outcome)]).increment()
            Metrics.Timer(label: "worker_tool_duration_seconds", dimensions: [("tool", name)], preferredDisplayUnit: .seconds)
                .recordNanoseconds(elapsed.nanosecondsValue)
            if Self.upstreamTools.contains(name), failure?.countsAsUsage ?? true {
                usage.recordCall(principal: principal, failed: outcome != "ok", milliseconds: elapsed.secondsValue * 1000)
            }
        }
        do {
            let value: JSONValue
            // Only a conversation's history is read before the session is known to be good.
            if name != "query_repository" { try await admission() }
            switch name {
            case "index_repository": value = try await indexRepository(arguments)
            case "query_repository": value = try await queryRepository(arguments, principal: principal, progress: progress, admission: admission)
            case "search_repository": value = try await searchRepository(arguments, principal: principal)
            case "get_repository_info": value = try await repositoryInfo(arguments)
            case "list_conversations": value = try await listConversations(arguments, principal: principal)
            case "share_conversation": value = try await shareConversation(arguments, principal: principal)
            case "unshare_conversation": value = try await unshareConversation(arguments, principal: principal)
            default: throw RPCError.invalidParams("Unknown tool: \(name.prefix(100)); the tools are \(Self.names.joined(separator: ", "))")
            }
            outcome = "ok"
            return Self.success(value)
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
            default: return Self.failure(caught.message(tool: name) ?? "\(name) failed")
            }
        }
    }

    static func success(_ value: JSONValue) -> CallTool.Result {
        let text = value.jsonText()
        let structured: Value? = value.objectValue != nil ? Value(value) : nil
        return CallTool.Result(content: [.text(text: text, annotations: nil, _meta: nil)], structuredContent: structured, isError: false)
    }

    static func failure(_ message: String) -> CallTool.Result {
        CallTool.Result(content: [.text(text: message, annotations: nil, _meta: nil)], isError: true)
    }

    // MARK: The tools

    private func indexRepository(_ arguments: ToolArguments) async throws -> JSONValue {
        let repository = try await resolve(RepositoryInput(arguments))
        let reload = try arguments.bool("reload", default: true)
        let notify = try arguments.bool("notify", default: false)
        var answer = try await greptile.index(IndexRequest(repository: repository, reload: reload, notify: notify))
        answer["repository"] = .string(repository.repository)
        answer["remote"] = .string(repository.remote)
        answer["branch"] = .string(repository.branch)
        return .object(answer)
    }

    private func listConversations(_ arguments: ToolArguments, principal: String) async throws -> JSONValue {
        let repository = try arguments.optionalString("repository")
        let query = try arguments.optionalString("query")
        let limit = try arguments.integer("limit", default: 20, in: 1...100)
        let entries = try await conversations.catalog.find(principal: principal, repository: repository, query: query, limit: limit)
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

    private func shareConversation(_ arguments: ToolArguments, principal: String) async throws -> JSONValue {
        let sessionID = try Conversations.sessionID(arguments.string("session_id"))
        let other = try arguments.string("principal")
        let accessName = try arguments.optionalString("access") ?? "read"
        guard let access = ConversationCatalog.Access(rawValue: accessName), access != .owner else {
            throw ToolError("access must be read or continue")
        }
        let theirs = try await conversations.catalog.share(principal: principal, sessionID: sessionID, with: other, access: access)
        return .object([
            "session_id": .string(sessionID), "shared_with": .string(other), "access": .string(access.rawValue), "their_session_id": .string(theirs),
        ])
    }

    private func unshareConversation(_ arguments: ToolArguments, principal: String) async throws -> JSONValue {
        let sessionID = try Conversations.sessionID(arguments.string("session_id"))
        let other = try arguments.string("principal")
        let wasShared = try await conversations.catalog.unshare(principal: principal, sessionID: sessionID, with: other)
        return .object(["session_id": .string(sessionID), "principal": .string(other), "was_shared": .bool(wasShared)])
    }

    private func repositoryInfo(_ arguments: ToolArguments) async throws -> JSONValue {
        let repository = try await resolve(RepositoryInput(arguments))
        return .object(try await greptile.status(of: repository))
    }

    private func searchRepository(_ arguments: ToolArguments, principal: String) async throws -> JSONValue {
        let query = try arguments.string("query")
        let repositories = try await resolve(arguments.repositories("repositories"))
        let sessionID = try arguments.optionalString("session_id").map { given throws(ToolError) in
            Conversations.upstreamSessionID(principal: principal, sessionID: try Conversations.sessionID(given))
        }
        _ = try arguments.bool("genius", default: true)
        let results = try await greptile.search(SearchRequest(query: query, repositories: repositories, sessionId: sessionID))
        return .object(["results": .array(results), "count": .int(Int64(results.count))])
    }

    private func queryRepository(
        _ arguments: ToolArguments, principal: String, progress: (any ProgressReporter)?, admission: Admission
    ) async throws -> JSONValue {
        let query = try arguments.string("query")
        let sessionID = try Conversations.sessionID(arguments.optionalString("session_id"))
        let stream = try arguments.bool("stream", default: false)
        let genius = try arguments.bool("genius", default: true)
        let timeout = try arguments.seconds("timeout")
        let previous = try arguments.messages("previous_messages")
        let inputs = try arguments.repositories("repositories")

        let askedAt = Date().timeIntervalSince1970
        let turn = try await conversations.begin(principal: principal, sessionID: sessionID, query: query, previousMessages: previous)
        // Reading the history was the last thing done before the session is known to be good.
        try await admission()
        let answer = {
            try await answerTurn(
                turn, query: query, sessionID: sessionID, principal: principal, askedAt: askedAt, inputs: inputs, previous: previous,
                stream: stream, genius: genius, timeout: timeout, progress: progress)
        }
        guard let interval = turn.keepAliveInterval else { return try await answer() }
        // Nothing in use expires: a conversation that lives less long than a call may take is
        // kept while Greptile answers and the turn is stored.
        let conversations = self.conversations
        return try await beside({ await conversations.keepInUse(turn, every: interval) }, answer)
    }

    private func answerTurn(
        _ turn: Conversations.Turn, query: String, sessionID: String, principal: String, askedAt: Double, inputs: [RepositoryInput],
        previous: [MessageInput]?, stream: Bool, genius: Bool, timeout: Duration?, progress: (any ProgressReporter)?
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
        // Once the answer is whole it is stored whole, even if the caller cancels meanwhile:
        // the exchange is recorded completely or (cancelled before this point) not at all.
        let conversations = self.conversations
        let usage = self.usage
        try await Task {
            try await conversations.finish(
                turn, principal: principal, query: query, askedAt: askedAt, answer: answer.message, previousMessages: previous,
                repositories: repositories)
            usage.recordTurn(principal: principal, started: turn.title != nil && turn.target.pointer == nil)
        }.value
        return .object(["message": .string(answer.message), "sources": .array(answer.sources), "_session_id": .string(sessionID)])
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
                try await Task.sleep(for: limit)
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

/// Told the text of a streamed answer as it grows (SSE progress notifications).
protocol ProgressReporter: Sendable {
    func report(_ textSoFar: String) async
}

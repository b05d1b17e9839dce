import Foundation
import Greptile
import MCP
import SessionModel

/// The tools this server offers: the four of the original greptile-mcp server, with its names
/// and parameters, and three for finding and sharing conversations. Each is declared once
/// (`ToolDeclaration`): what `tools/list` says and what a call's arguments must be.
enum ToolCatalog {
    static let all: [ToolDeclaration] = [
        indexRepository, queryRepository, searchRepository, repositoryInfo, listConversations, shareConversation, unshareConversation,
    ]

    private static let byName = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    static func declaration(named name: String) -> ToolDeclaration? { byName[name] }

    static var names: [String] { all.map(\.name) }

    /// `tools/list`'s `tools`, made once.
    static let listing: JSONValue = .array(all.map(\.listing))

    /// The same, for sessions of a revision with tasks: the long tools may run as tasks
    /// (`execution.taskSupport`), the others only answer directly.
    static let listingWithTasks: JSONValue = .array(
        all.map { declaration in
            guard var tool = declaration.listing.objectValue else { return declaration.listing }
            tool["execution"] = ["taskSupport": TaskRecord.tools.contains(declaration.name) ? "optional" : "forbidden"]
            return .object(tool)
        })

    // MARK: The tools

    static let indexRepository = ToolDeclaration(
        name: "index_repository",
        title: "Index a repository",
        description: """
            Submit a repository to Greptile for indexing, so it can be queried and searched. \
            Indexing runs in the background; check progress with get_repository_info. \
            The branch defaults to the repository's default branch (looked up on GitHub).
            """,
        input: repositoryFields(
            extra: [
                ("reload", .flag(description: "Re-process the repository even if it was indexed before.", default: true)),
                ("notify", .flag(description: "E-mail the account when indexing is done.", default: false)),
            ], branch: "Branch to index; defaults to the repository's default branch."),
        annotations: .init(title: "Index a repository", readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true),
        callsUpstream: true, output: Outputs.indexing)

    static let queryRepository = ToolDeclaration(
        name: "query_repository",
        title: "Ask about a codebase",
        description: """
            Ask Greptile a question in natural language about one or more indexed repositories. \
            Returns the answer, the source files it drew on, and _session_id: pass that back as \
            session_id to ask a follow-up in the same conversation (the history is kept for you).
            """,
        input: ArgumentSchema.Record(
            properties: [
                ("query", .text(.init(description: "The question."))),
                ("repositories", repositories),
                ("session_id", conversationID("Conversation to continue; a new one is started when omitted.")),
                ("stream", .flag(description: "Stream the answer as it is written.", default: false)),
                ("genius", .flag(description: "Slower (8-10 s more) but better answers.", default: true)),
                ("timeout", .seconds(description: "Seconds to wait for Greptile (default 120).", max: 600)),
                (
                    "previous_messages",
                    .list(
                        .init(
                            description: "Replaces the stored history of this conversation.",
                            items: .record(
                                .init(
                                    properties: [
                                        ("role", .text(.init(description: nil, choices: ["user", "assistant", "system"]))),
                                        ("content", .text(.init(description: nil))),
                                    ], required: ["role", "content"])),
                            itemNoun: "{role, content}", pluralNoun: "messages"))
                ),
            ], required: ["query", "repositories"]),
        annotations: .init(title: "Ask about a codebase", readOnlyHint: true, destructiveHint: false, openWorldHint: true),
        callsUpstream: true, output: Outputs.answer)

    static let searchRepository = ToolDeclaration(
        name: "search_repository",
        title: "Search a codebase",
        description: """
            Find the files and line ranges of indexed repositories that are relevant to a query, \
            without writing an answer. Faster than query_repository.
            """,
        input: ArgumentSchema.Record(
            properties: [
                ("query", .text(.init(description: "What to look for."))),
                ("repositories", repositories),
                ("session_id", conversationID("Greptile session to associate the search with.")),
                ("genius", .flag(description: "Accepted for compatibility with the original server.", default: true)),
            ], required: ["query", "repositories"]),
        annotations: .init(title: "Search a codebase", readOnlyHint: true, destructiveHint: false, openWorldHint: true),
        callsUpstream: true, output: Outputs.search)

    static let repositoryInfo = ToolDeclaration(
        name: "get_repository_info",
        title: "Repository indexing status",
        description: """
            Show a repository's indexing status in Greptile: submitted, cloning, processing, completed \
            or failed, with files processed. The branch defaults to the repository's default branch.
            """,
        input: repositoryFields(extra: [], branch: "Branch; defaults to the default branch."),
        annotations: .init(title: "Repository indexing status", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true),
        callsUpstream: true, output: Outputs.repositoryStatus)

    static let listConversations = ToolDeclaration(
        name: "list_conversations",
        title: "Find past conversations",
        description: """
            List your past conversations with Greptile (and those shared with you), newest first, \
            optionally only those about a repository or whose questions mention some words. Pass a \
            conversation's session_id to query_repository to continue it.
            """,
        input: ArgumentSchema.Record(properties: [
            ("repository", .text(.init(description: "Only conversations about this repository (owner/name)."))),
            ("query", .text(.init(description: "Only conversations whose questions contain these words (any case)."))),
            ("limit", .whole(description: "Most conversations to return.", range: 1...100, default: 20)),
        ]),
        annotations: .init(title: "Find past conversations", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false),
        output: Outputs.conversations)

    static let shareConversation = ToolDeclaration(
        name: "share_conversation",
        title: "Share a conversation",
        description: """
            Share one of your conversations with another person on this server: read only, or read \
            and continue. They find it with list_conversations, under the session_id this returns.
            """,
        input: ArgumentSchema.Record(
            properties: [
                ("session_id", conversationID("Your conversation to share.")),
                ("principal", .text(.init(description: "Who to share it with (their name on this server)."))),
                (
                    "access",
                    .text(
                        .init(
                            description: "read: they may read it; continue: they may also ask follow-ups in it.", choices: ["read", "continue"],
                            defaultValue: "read"))
                ),
            ], required: ["session_id", "principal"]),
        annotations: .init(title: "Share a conversation", readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false),
        output: Outputs.share)

    static let unshareConversation = ToolDeclaration(
        name: "unshare_conversation",
        title: "Stop sharing a conversation",
        description: "Stop sharing one of your conversations with someone: it leaves their list at once.",
        input: ArgumentSchema.Record(
            properties: [
                ("session_id", conversationID("Your shared conversation.")),
                ("principal", .text(.init(description: "Who to stop sharing it with."))),
            ], required: ["session_id", "principal"]),
        annotations: .init(title: "Stop sharing a conversation", readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false),
        output: Outputs.unshare)

    // MARK: Shared argument shapes

    /// `remote`: where a repository is hosted.
    private static let remote = ArgumentSchema.text(
        .init(description: "Where the repository is hosted.", choices: ["github", "gitlab"], defaultValue: "github", caseInsensitive: true))

    /// `{remote, repository, branch}`, with the name and branch checked as the hosting services
    /// define them before any of it reaches an upstream URL.
    private static func repositoryFields(extra: [(String, ArgumentSchema)], branch: String?) -> ArgumentSchema.Record {
        ArgumentSchema.Record(
            properties: [
                ("remote", remote),
                ("repository", .text(.init(description: "The repository as owner/name.", pattern: "^[^/\\s]+/[^\\s]+$"))),
                ("branch", .text(.init(description: branch))),
            ] + extra,
            required: ["repository"],
            rule: { fields throws(ToolError) in
                do throws(RepositoryName.Invalid) {
                    try RepositoryName.validate(fields["repository"]?.stringValue ?? "", remote: fields["remote"]?.stringValue ?? "github")
                    if let branch = fields["branch"]?.stringValue { try RepositoryName.validateBranch(branch) }
                } catch {
                    throw ToolError(error.message)
                }
            })
    }

    /// `repositories`: the repositories one call asks about.
    private static let repositories = ArgumentSchema.list(
        .init(
            description: "Repositories to ask about.", items: .record(repositoryFields(extra: [], branch: nil)), minItems: 1,
            maxItems: maxRepositories, itemNoun: "{remote, repository, branch}", pluralNoun: "repositories"))

    /// Most repositories one call may name: each may cost a GitHub lookup with the server's token.
    static let maxRepositories = 10

    /// A conversation's `session_id`, as a caller names it.
    private static func conversationID(_ description: String) -> ArgumentSchema {
        .text(
            .init(
                description: description,
                rule: { given throws(ToolError) in
                    guard Conversations.isValidSessionID(given) else {
                        throw ToolError("must be 1 to \(Conversations.maxSessionIDLength) of \(SessionID.alphabet)")
                    }
                }))
    }
}

/// The JSON Schemas of the tools' structured results (`outputSchema`): what a client may rely
/// on; Greptile's own objects are described by the fields the tools name, open to more.
enum Outputs {
    private static func object(_ properties: [(String, JSONValue)], required: [String] = []) -> JSONValue {
        var fields: JSONObject = ["type": "object", "properties": .object(JSONObject(uniqueKeysWithValues: properties))]
        if !required.isEmpty { fields["required"] = .array(required.map(JSONValue.string)) }
        return .object(fields)
    }

    private static let string: JSONValue = ["type": "string"]
    private static let anyObject: JSONValue = ["type": "object"]
    private static let objects: JSONValue = ["type": "array", "items": anyObject]

    static let indexing = object(
        [
            ("message", string), ("statusEndpoint", string), ("repository", string), ("remote", string), ("branch", string),
            ("indexing", anyObject),
        ], required: ["repository", "remote", "branch"])
    static let answer = object([("message", string), ("sources", objects), ("_session_id", string)], required: ["message", "sources", "_session_id"])
    static let search = object([("results", objects), ("count", ["type": "integer"])], required: ["results", "count"])
    static let repositoryStatus = object([("status", ["type": ["string", "null"]]), ("sha", ["type": ["string", "null"]])])
    static let conversations = object(
        [
            (
                "conversations",
                [
                    "type": "array",
                    "items": object(
                        [
                            ("session_id", string), ("title", string), ("repositories", ["type": "array", "items": string]),
                            ("turns", ["type": "integer"]), ("last_updated", string), ("uri", string), ("owner", string),
                            ("access", ["type": "string", "enum": ["read", "continue"]]),
                        ], required: ["session_id", "title", "repositories", "turns", "last_updated", "uri"]),
                ]
            ),
            ("count", ["type": "integer"]),
        ], required: ["conversations", "count"])
    static let share = object(
        [("session_id", string), ("shared_with", string), ("access", string), ("their_session_id", string)],
        required: ["session_id", "shared_with", "access", "their_session_id"])
    static let unshare = object(
        [("session_id", string), ("principal", string), ("was_shared", ["type": "boolean"])], required: ["session_id", "principal", "was_shared"])
}

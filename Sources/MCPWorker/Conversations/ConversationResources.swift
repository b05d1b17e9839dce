import Foundation
import MCP
import SessionModel

/// Conversations as MCP resources (`resources/list`, `resources/read`,
/// `resources/templates/list`), the same under every revision: a client that restarted finds
/// its threads again, and shows them to its user as it shows files.
///
/// A conversation's URI is `conversation://<session_id>`, the id percent-encoded beyond the
/// URL's unreserved characters; the id is the caller's (its own conversation's, or the one a
/// share gave it), so a URI never names another principal's conversation.
struct ConversationResources: Sendable {
    let catalog: ConversationCatalog
    /// Resources per `resources/list` page.
    let pageSize: Int

    static let scheme = "conversation://"
    static let template = "conversation://{session_id}"
    /// MCP's "resource not found".
    static let notFound = -32002

    static func uri(of sessionID: String) -> String {
        scheme + (sessionID.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? sessionID)
    }

    /// The session id a URI names; nil when it is not one of ours.
    static func sessionID(of uri: String) -> String? {
        guard uri.hasPrefix(scheme), let id = String(uri.dropFirst(scheme.count)).removingPercentEncoding, !id.isEmpty,
            Conversations.isValidSessionID(id)
        else { return nil }
        return id
    }

    /// `resources/list`: the caller's conversations and those shared with it, newest first.
    func list(principal: String, params: JSONValue?) async throws -> JSONValue {
        var before: HostAPI.ListCursor?
        if case .string(let cursor)? = params?.objectValue?["cursor"] {
            guard let decoded = Data(base64Encoded: cursor).map({ String(decoding: $0, as: UTF8.self) }).flatMap(HostAPI.ListCursor.init) else {
                throw RPCError.invalidParams("Invalid params: cursor is not one this server gave")
            }
            before = decoded
        }
        let (entries, next) = try await catalog.page(principal: principal, before: before, limit: pageSize)
        var result: JSONObject = ["resources": .array(entries.map(Self.resource))]
        if let next { result["nextCursor"] = .string(Data(next.text.utf8).base64EncodedString()) }
        return .object(result)
    }

    /// `resources/read`: one conversation, as Markdown and as JSON.
    func read(principal: String, params: JSONValue?) async throws -> JSONValue {
        guard case .string(let uri)? = params?.objectValue?["uri"] else { throw RPCError.invalidParams("Invalid params: uri is required") }
        let notFound = RPCError(Self.notFound, "Resource not found: \(uri.prefix(200))", data: .object(["uri": .string(String(uri.prefix(200)))]))
        guard let sessionID = Self.sessionID(of: uri) else { throw notFound }
        // Read into an optional first: the release compiler (6.3.1) crashes splitting this
        // coroutine when the typed-throwing call sits inside the guard's tuple pattern.
        let found: (ConversationCatalog.Entry, SessionRecord)? = try await catalog.read(principal: principal, sessionID: sessionID)
        guard let (entry, record) = found else { throw notFound }
        return .object([
            "contents": .array([
                .object(["uri": .string(uri), "mimeType": "text/markdown", "text": .string(ConversationCatalog.markdown(entry, record))]),
                .object(["uri": .string(uri), "mimeType": "application/json", "text": .string(ConversationCatalog.json(entry, record).jsonText())]),
            ])
        ])
    }

    /// `resources/templates/list`.
    static let templates: JSONValue = .object([
        "resourceTemplates": .array([
            .object([
                "uriTemplate": .string(template), "name": "conversation", "title": "A conversation with Greptile",
                "description": "A past conversation about code: its questions and answers. session_id is what query_repository returned as _session_id.",
                "mimeType": "text/markdown",
            ])
        ])
    ])

    static func resource(_ entry: ConversationCatalog.Entry) -> JSONValue {
        let summary = entry.summary
        var about = "\(summary.turns) turn\(summary.turns == 1 ? "" : "s")"
        if !summary.repositories.isEmpty { about += " about " + summary.repositories.joined(separator: ", ") }
        if entry.access != .owner { about += "; shared by \(entry.owner) (\(entry.access.rawValue))" }
        return .object([
            "uri": .string(uri(of: entry.sessionID)), "name": .string(entry.sessionID), "title": .string(summary.title),
            "description": .string(about), "mimeType": "text/markdown",
            "annotations": .object(["lastModified": .string(ConversationCatalog.iso8601(summary.lastUpdated)), "audience": ["user", "assistant"]]),
            "_meta": .object([
                "io.greptile-mcp/session_id": .string(entry.sessionID), "io.greptile-mcp/repositories": .array(summary.repositories.map(JSONValue.string)),
                "io.greptile-mcp/turns": .int(Int64(summary.turns)), "io.greptile-mcp/access": .string(entry.access.rawValue),
            ]),
        ])
    }
}

import Crypto
import Foundation
import SessionClient
import SessionModel

/// The conversations a principal can find, read and share: its own, and those shared with it.
///
/// A conversation belongs to the principal whose id it is under (`conv:<owner>:<session_id>`);
/// its metadata is the authority on who else may see it: `share:<principal>` is `read` or
/// `continue`. Sharing also leaves a pointer under the other principal's ids
/// (`conv:<them>:from-<owner>-<digest>`, kind `share`), so that it appears in their listing
/// and they have a `session_id` of their own to pass. A pointer grants nothing by itself:
/// every use checks the owner's record, so a revoked share is gone even if its pointer is
/// not, and a principal can only ever name ids under its own name: no answer reveals whether
/// another principal's conversation exists.
struct ConversationCatalog: Sendable {
    let store: any SessionManager
    /// The principals that may be shared with: those with a client key now.
    let keys: ClientKeys

    enum Access: String, Sendable {
        case owner
        case read
        case `continue`

        var mayContinue: Bool { self != .read }
    }

    /// A conversation as one principal reaches it.
    struct Entry: Sendable {
        /// The id the principal uses for it (its own session id, or its pointer's).
        let sessionID: String
        let owner: String
        /// The owner's session id.
        let ownerSessionID: String
        let access: Access
        let summary: Summary
    }

    /// What lists show of a conversation.
    struct Summary: Sendable {
        var title: String
        var repositories: [String]
        var turns: Int
        var lastUpdated: Double
        var createdAt: Double
    }

    /// Which conversation `sessionID` of `principal` is, and what the principal may do with it:
    /// its own (existing or not yet), or one shared with it. Nil: not one it may use.
    struct Target: Sendable {
        let storageID: String
        let owner: String
        let ownerSessionID: String
        let access: Access
        /// The pointer through which it was reached, for a shared one.
        let pointer: String?
    }

    /// Whether `sessionID` has the shape of the ids shares give (`from-<owner>-<12 hex>`): one
    /// that is not (or no longer) a share is refused, never taken for a new conversation.
    static func isPointerID(_ sessionID: String) -> Bool {
        let prefix = StorageKeys.sharePointerPrefix
        guard sessionID.hasPrefix(prefix), let dash = sessionID.lastIndex(of: "-") else { return false }
        let owner = sessionID[sessionID.index(sessionID.startIndex, offsetBy: prefix.count)..<dash]
        let digest = sessionID[sessionID.index(after: dash)...]
        return !owner.isEmpty && digest.count == 12 && String(digest).isLowercaseHex
    }

    static func pointerID(owner: String, sessionID: String) -> String {
        let digest = SHA256.hash(data: Data("greptile-mcp/share\u{0}\(owner)\u{0}\(sessionID)".utf8))
        return "\(StorageKeys.sharePointerPrefix)\(owner)-" + digest.prefix(6).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// Resolves `sessionID` for `principal`: a pointer leads to the conversation it points at,
    /// if the owner still shares it; anything else is the principal's own.
    func target(principal: String, sessionID: String) async throws(SessionError) -> Target? {
        let own = Conversations.storageID(principal: principal, sessionID: sessionID)
        let metadata = try await store.record(own)?.metadata ?? [:]
        return try await target(principal: principal, sessionID: sessionID, ownMetadata: metadata)
    }

    /// As `target(principal:sessionID:)`, with the metadata of the principal's own record
    /// under that id already read (a conversation turn reads it with the history).
    func target(principal: String, sessionID: String, ownMetadata metadata: JSONObject) async throws(SessionError) -> Target? {
        let own = Conversations.storageID(principal: principal, sessionID: sessionID)
        guard metadata["kind"]?.stringValue == Self.shareKind else {
            // A share's id that is no longer a share is not a new conversation either.
            if Self.isPointerID(sessionID) && metadata["kind"]?.stringValue != Conversations.kind { return nil }
            return Target(storageID: own, owner: principal, ownerSessionID: sessionID, access: .owner, pointer: nil)
        }
        guard let owner = metadata["owner"]?.stringValue, let ownerSession = metadata["session_id"]?.stringValue else { return nil }
        let shared = Conversations.storageID(principal: owner, sessionID: ownerSession)
        guard let conversation = try await store.record(shared), let access = Self.access(of: principal, in: conversation.metadata) else {
            return nil
        }
        return Target(storageID: shared, owner: owner, ownerSessionID: ownerSession, access: access, pointer: own)
    }

    static let shareKind = "share"

    static func access(of principal: String, in metadata: JSONObject) -> Access? {
        metadata["share:\(principal)"]?.stringValue.flatMap(Access.init(rawValue:)).flatMap { $0 == .owner ? nil : $0 }
    }

    // MARK: Lists

    /// One page of what `principal` can see, newest first.
    func page(principal: String, before: HostAPI.ListCursor?, limit: Int) async throws(SessionError) -> (entries: [Entry], next: HostAPI.ListCursor?) {
        let page = try await store.list(
            SessionListing(prefix: Conversations.storagePrefix(principal: principal), before: before, limit: limit))
        var entries: [Entry] = []
        for summary in page.summaries {
            guard let sessionID = Self.sessionID(of: summary.id, principal: principal) else { continue }
            if Conversations.isConversation(summary.metadata) {
                entries.append(
                    Entry(
                        sessionID: sessionID, owner: principal, ownerSessionID: sessionID, access: .owner,
                        summary: Self.summary(
                            metadata: summary.metadata, messages: summary.messageCount, lastUpdated: summary.lastUpdated,
                            createdAt: summary.createdAt)))
            } else if summary.metadata["kind"]?.stringValue == Self.shareKind, let target = try await target(principal: principal, sessionID: sessionID),
                let record = try await store.record(target.storageID)
            {
                entries.append(
                    Entry(
                        sessionID: sessionID, owner: target.owner, ownerSessionID: target.ownerSessionID, access: target.access,
                        summary: Self.summary(
                            metadata: record.metadata, messages: record.messages.count, lastUpdated: record.lastUpdated,
                            createdAt: record.createdAt)))
            }
        }
        return (entries, page.next)
    }

    /// Conversations `principal` can see that are about `repository` (owner/name) and asked
    /// something containing `query` (any case), newest first; at most `limit`, looking at
    /// no more than `scan` of them.
    func find(principal: String, repository: String?, query: String?, limit: Int, scan: Int = 200) async throws(SessionError) -> [Entry] {
        var found: [Entry] = []
        var before: HostAPI.ListCursor?
        var seen = 0
        repeat {
            let (entries, next) = try await page(principal: principal, before: before, limit: 50)
            for entry in entries {
                seen += 1
                if let repository, !entry.summary.repositories.contains(where: { $0.caseInsensitiveCompare(repository) == .orderedSame }) { continue }
                if let query {
                    let id = Conversations.storageID(principal: entry.owner, sessionID: entry.ownerSessionID)
                    let questions = (try await store.record(id))?.messages.filter { $0.role == .user } ?? []
                    guard questions.contains(where: { $0.content.range(of: query, options: [.caseInsensitive, .diacriticInsensitive]) != nil }) else {
                        continue
                    }
                }
                found.append(entry)
                if found.count == limit { return found }
            }
            before = next
        } while before != nil && seen < scan
        return found
    }

    /// The whole conversation `sessionID` as `principal` may read it; nil when it may not
    /// (or there is none: the two are never told apart).
    func read(principal: String, sessionID: String) async throws(SessionError) -> (Entry, SessionRecord)? {
        guard let target = try await target(principal: principal, sessionID: sessionID),
            let record = try await store.record(target.storageID), Conversations.isConversation(record.metadata)
        else { return nil }
        let entry = Entry(
            sessionID: sessionID, owner: target.owner, ownerSessionID: target.ownerSessionID, access: target.access,
            summary: Self.summary(metadata: record.metadata, messages: record.messages.count, lastUpdated: record.lastUpdated, createdAt: record.createdAt))
        return (entry, record)
    }

    // MARK: Sharing

    /// Shares `principal`'s conversation `sessionID` with `other`; returns the id it has there.
    func share(principal: String, sessionID: String, with other: String, access: Access) async throws -> String {
        let own = Conversations.storageID(principal: principal, sessionID: sessionID)
        guard let record = try await store.record(own), Conversations.isConversation(record.metadata) else {
            throw ToolError("you have no conversation '\(sessionID)' to share: list_conversations shows yours")
        }
        guard other != principal else { throw ToolError("a conversation is yours already: share it with someone else") }
        let principals = keys.principals
        guard principals.contains(other) else {
            throw ToolError(
                principals.count <= 1
                    ? "this server has no other principals to share with (it runs with one client key, or none)"
                    : "no principal named '\(other.prefix(64))' uses this server")
        }
        guard access != .owner else { throw ToolError("access must be read or continue") }
        try await store.write(own, SessionUpdate(.updateMetadata(["share:\(other)": .string(access.rawValue)]), principal: principal))
        let pointer = Self.pointerID(owner: principal, sessionID: sessionID)
        let pointerMetadata: JSONObject = [
            "kind": .string(Self.shareKind), "owner": .string(principal), "session_id": .string(sessionID),
        ]
        try await store.write(Conversations.storageID(principal: other, sessionID: pointer), SessionUpdate(.updateMetadata(pointerMetadata), principal: other))
        return pointer
    }

    /// Stops sharing `principal`'s conversation `sessionID` with `other`: the owner's record
    /// first (from then on nothing is granted), then the pointer.
    func unshare(principal: String, sessionID: String, with other: String) async throws -> Bool {
        let own = Conversations.storageID(principal: principal, sessionID: sessionID)
        guard let record = try await store.record(own), Conversations.isConversation(record.metadata) else {
            throw ToolError("you have no conversation '\(sessionID)': list_conversations shows yours")
        }
        let wasShared = record.metadata["share:\(other)"] != nil
        if wasShared { try await store.write(own, SessionUpdate(.updateMetadata(["share:\(other)": .null]), principal: principal)) }
        if SessionUpdate.isValidPrincipal(other) {
            try await store.clear(Conversations.storageID(principal: other, sessionID: Self.pointerID(owner: principal, sessionID: sessionID)))
        }
        return wasShared
    }

    /// Who a conversation is shared with, from its metadata.
    static func sharedWith(_ metadata: JSONObject) -> [String: String] {
        var shares: [String: String] = [:]
        for (key, value) in metadata where key.hasPrefix("share:") {
            if let access = value.stringValue { shares[String(key.dropFirst("share:".count))] = access }
        }
        return shares
    }

    // MARK: Shapes

    static func sessionID(of storageID: String, principal: String) -> String? {
        let prefix = Conversations.storagePrefix(principal: principal)
        guard storageID.hasPrefix(prefix) else { return nil }
        return String(storageID.dropFirst(prefix.count))
    }

    static func summary(metadata: JSONObject, messages: Int, lastUpdated: Double, createdAt: Double) -> Summary {
        let repositories = (metadata["repositories"]?.arrayValue ?? []).compactMap { $0.objectValue?["repository"]?.stringValue }
        return Summary(
            title: metadata["title"]?.stringValue ?? "Untitled conversation", repositories: repositories, turns: (messages + 1) / 2,
            lastUpdated: lastUpdated, createdAt: createdAt)
    }

    /// A conversation as Markdown: its title, what it is about, then each question and answer.
    static func markdown(_ entry: Entry, _ record: SessionRecord) -> String {
        var text = "# \(entry.summary.title)\n\n"
        var facts: [String] = []
        if !entry.summary.repositories.isEmpty { facts.append("Repositories: " + entry.summary.repositories.map { "`\($0)`" }.joined(separator: ", ")) }
        facts.append("\(entry.summary.turns) turn\(entry.summary.turns == 1 ? "" : "s")")
        facts.append("last \(iso8601(entry.summary.lastUpdated))")
        if entry.access != .owner { facts.append("shared by \(entry.owner) (\(entry.access.rawValue))") }
        text += facts.joined(separator: " · ") + "\n"
        var question = 0
        for message in record.messages {
            switch message.role {
            case .user:
                question += 1
                text += "\n## Question \(question)\n\n\(message.content)\n"
            case .assistant:
                text += "\n### Answer\n\n\(message.content)\n"
            case .system:
                text += "\n> \(message.content.replacingOccurrences(of: "\n", with: "\n> "))\n"
            }
        }
        return text
    }

    /// A conversation as JSON: what a program needs to continue or archive it.
    static func json(_ entry: Entry, _ record: SessionRecord) -> JSONValue {
        .object([
            "session_id": .string(entry.sessionID), "owner": .string(entry.owner), "access": .string(entry.access.rawValue),
            "title": .string(entry.summary.title), "repositories": .array(entry.summary.repositories.map(JSONValue.string)),
            "turns": .int(Int64(entry.summary.turns)), "created_at": .double(record.createdAt), "last_updated": .double(record.lastUpdated),
            "messages": .array(
                record.messages.map { .object(["role": .string($0.role.rawValue), "content": .string($0.content), "timestamp": .double($0.timestamp)]) }),
        ])
    }

    static func iso8601(_ time: Double) -> String {
        Date(timeIntervalSince1970: time).formatted(.iso8601)
    }
}

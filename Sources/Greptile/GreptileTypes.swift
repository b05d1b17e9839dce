import Foundation
import SessionModel

/// A repository as Greptile names it.
public struct RepositoryRef: Codable, Sendable, Hashable {
    /// "github" or "gitlab".
    public var remote: String
    /// "owner/name".
    public var repository: String
    public var branch: String

    public init(remote: String, repository: String, branch: String) {
        self.remote = remote
        self.repository = repository
        self.branch = branch
    }

    /// Greptile's repository id: `remote:branch:owner/name`, every `:` and `/` percent-encoded.
    public var greptileID: String {
        "\(remote):\(branch):\(repository)".percentEncodedPathSegment
    }
}

/// `POST /repositories`: start (or redo) indexing.
public struct IndexRequest: Codable, Sendable, Hashable {
    public var remote: String
    public var repository: String
    public var branch: String
    public var reload: Bool
    public var notify: Bool

    public init(repository: RepositoryRef, reload: Bool, notify: Bool) {
        remote = repository.remote
        self.repository = repository.repository
        branch = repository.branch
        self.reload = reload
        self.notify = notify
    }
}

/// A turn sent to `POST /query`.
public struct QueryMessage: Codable, Sendable, Hashable {
    public var id: String?
    public var content: String
    /// "user" or "assistant".
    public var role: String

    public init(id: String? = nil, content: String, role: String) {
        self.id = id
        self.content = content
        self.role = role
    }
}

/// `POST /query`.
public struct QueryRequest: Codable, Sendable, Hashable {
    public var messages: [QueryMessage]
    public var repositories: [RepositoryRef]
    public var sessionId: String?
    public var stream: Bool
    public var genius: Bool

    public init(messages: [QueryMessage], repositories: [RepositoryRef], sessionId: String?, stream: Bool, genius: Bool) {
        self.messages = messages
        self.repositories = repositories
        self.sessionId = sessionId
        self.stream = stream
        self.genius = genius
    }
}

/// `POST /search`.
public struct SearchRequest: Codable, Sendable, Hashable {
    public var query: String
    public var repositories: [RepositoryRef]
    public var sessionId: String?
    public var stream: Bool

    public init(query: String, repositories: [RepositoryRef], sessionId: String?, stream: Bool = false) {
        self.query = query
        self.repositories = repositories
        self.sessionId = sessionId
        self.stream = stream
    }
}

/// Greptile's answer to a query: the text, and the code it drew on.
public struct QueryAnswer: Sendable, Hashable {
    public var message: String
    /// Sources as Greptile sent them (`repository`, `remote`, `branch`, `filepath`, `linestart`, `lineend`, `summary`).
    public var sources: [JSONValue]
    /// Greptile's own session id, when it sent one.
    public var sessionID: String?

    public init(message: String, sources: [JSONValue], sessionID: String? = nil) {
        self.message = message
        self.sources = sources
        self.sessionID = sessionID
    }
}

/// One piece of a streamed answer.
public enum QueryChunk: Sendable, Hashable {
    /// More of the answer's text.
    case text(String)
    /// A citation: a file and its lines.
    case citation(JSONObject)
    /// Greptile's session id for the conversation.
    case sessionID(String)
    /// A whole answer object (`message`, `sources`) sent at once.
    case answer(QueryAnswer)
}

/// `GET /repositories/{id}` answers this; every field optional, as Greptile's may be.
public typealias RepositoryStatus = JSONObject

/// What the GitHub API says of a repository.
public struct GitHubRepository: Codable, Sendable, Hashable {
    public var fullName: String
    public var defaultBranch: String
    public var isPrivate: Bool

    enum CodingKeys: String, CodingKey {
        case fullName = "full_name"
        case defaultBranch = "default_branch"
        case isPrivate = "private"
    }
}

/// A request body written straight to JSON (a query is sent per question; a generic encoder
/// was a twentieth of a worker's CPU). The same JSON as `JSONCoding.encoder` writes: keys
/// sorted, absent optionals left out.
public protocol UpstreamBody: Encodable, Sendable {
    var jsonValue: JSONValue { get }
}

extension RepositoryRef {
    var jsonValue: JSONValue { ["branch": .string(branch), "remote": .string(remote), "repository": .string(repository)] }
}

extension IndexRequest: UpstreamBody {
    public var jsonValue: JSONValue {
        ["remote": .string(remote), "repository": .string(repository), "branch": .string(branch), "reload": .bool(reload), "notify": .bool(notify)]
    }
}

extension QueryRequest: UpstreamBody {
    public var jsonValue: JSONValue {
        var object: JSONObject = [
            "messages": .array(
                messages.map { message in
                    var item: JSONObject = ["content": .string(message.content), "role": .string(message.role)]
                    if let id = message.id { item["id"] = .string(id) }
                    return .object(item)
                }),
            "repositories": .array(repositories.map(\.jsonValue)), "stream": .bool(stream), "genius": .bool(genius),
        ]
        if let sessionId { object["sessionId"] = .string(sessionId) }
        return .object(object)
    }
}

extension SearchRequest: UpstreamBody {
    public var jsonValue: JSONValue {
        var object: JSONObject = ["query": .string(query), "repositories": .array(repositories.map(\.jsonValue)), "stream": .bool(stream)]
        if let sessionId { object["sessionId"] = .string(sessionId) }
        return .object(object)
    }
}

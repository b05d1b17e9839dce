import CurlHTTP
import Foundation
import Logging
import ServerRuntime
import SessionModel
import Tracing

/// Where the upstream services are and how patiently to call them.
public struct UpstreamConfiguration: Sendable {
    public var greptileBaseURL: String
    public var githubBaseURL: String
    public var greptileAPIKey: String?
    public var githubToken: String?
    public var retry: RetryPolicy
    public var maxRetryAfter: Duration
    /// Limit on a query or search (genius queries take 8-10 s more than plain ones).
    public var queryTimeout: Duration
    /// Limit on the other calls.
    public var callTimeout: Duration

    public init(
        greptileBaseURL: String = "https://api.greptile.com/v2", githubBaseURL: String = "https://api.github.com",
        greptileAPIKey: String? = nil, githubToken: String? = nil,
        retry: RetryPolicy = RetryPolicy(attempts: 3, initialDelay: .milliseconds(500)),
        maxRetryAfter: Duration = .seconds(30), queryTimeout: Duration = .seconds(120), callTimeout: Duration = .seconds(30)
    ) {
        self.greptileBaseURL = greptileBaseURL.hasSuffix("/") ? String(greptileBaseURL.dropLast()) : greptileBaseURL
        self.githubBaseURL = githubBaseURL.hasSuffix("/") ? String(githubBaseURL.dropLast()) : githubBaseURL
        self.greptileAPIKey = greptileAPIKey
        self.githubToken = githubToken
        self.retry = retry
        self.maxRetryAfter = maxRetryAfter
        self.queryTimeout = queryTimeout
        self.callTimeout = callTimeout
    }

    /// What is missing for Greptile calls to work, as sentences with the fix.
    public var problems: [String] {
        var problems: [String] = []
        if greptileAPIKey == nil { problems.append("GREPTILE_API_KEY is not set: export it in the worker's environment") }
        if githubToken == nil { problems.append("GITHUB_TOKEN is not set: export a token with read access to the repositories") }
        return problems
    }
}

/// Greptile's API (docs/ARCHITECTURE.md, "Upstream"): index, status, query, search.
public final class GreptileClient: Sendable {
    public let configuration: UpstreamConfiguration
    private let caller: UpstreamCaller

    public init(configuration: UpstreamConfiguration, client: CurlClient, clock: ServerClock = .system, logger: Logger) {
        self.configuration = configuration
        caller = UpstreamCaller(
            service: "Greptile", client: client, retry: configuration.retry, maxRetryAfter: configuration.maxRetryAfter, clock: clock,
            logger: logger)
    }

    /// `POST /repositories`: starts indexing; answers `{message, statusEndpoint}`.
    public func index(_ request: IndexRequest) async throws -> JSONObject {
        let response = try await send(.post, "/repositories", body: request, what: "indexing \(request.repository)")
        return try object(response, what: "indexing")
    }

    /// `GET /repositories/{id}`: the indexing status of a repository.
    public func status(of repository: RepositoryRef) async throws -> RepositoryStatus {
        let response = try await send(
            .get, "/repositories/\(repository.greptileID)", body: nil as String?, what: "reading the status of \(repository.repository)")
        return try object(response, what: "repository status")
    }

    /// `POST /query` without streaming: the whole answer at once.
    public func query(_ request: QueryRequest, timeout: Duration? = nil) async throws -> QueryAnswer {
        var request = request
        request.stream = false
        let response = try await send(.post, "/query", body: request, what: "querying", timeout: timeout ?? configuration.queryTimeout)
        let object = try object(response, what: "query")
        guard let message = object["message"]?.stringValue else {
            throw GreptileError(.invalidResponse, "Greptile's answer to a query had no message")
        }
        if case .array(let sources)? = object["sources"] {
            return QueryAnswer(message: message, sources: sources, sessionID: object["sessionId"]?.stringValue)
        }
        return QueryAnswer(message: message, sources: [], sessionID: object["sessionId"]?.stringValue)
    }

    /// `POST /query` with `stream: true`: the answer chunk by chunk, as Greptile sends it.
    public func queryStream(_ request: QueryRequest) async throws -> QueryChunks {
        var request = request
        request.stream = true
        var http = try httpRequest(.post, "/query", body: request, timeout: nil)
        // The span covers the stream's opening; its chunks are read by the caller, later.
        return try await Traces.span("Greptile POST \(UpstreamCaller.path(of: http.url)) (stream)", kind: .client) { span in
            for field in Traces.outgoingHeaders() { http.headers.add(field.name, field.value) }
            let streaming = try await caller.client.stream(http)
            span?.attributes["http.response.status_code"] = streaming.status
            if streaming.status != 200 {
                Traces.fail(span, "HTTP \(streaming.status)")
                let body = (try? await streaming.body.collect(upTo: 64 * 1024)) ?? Data()
                throw failure(HTTPResponse(status: streaming.status, headers: streaming.headers, body: body), what: "querying")
            }
            return QueryChunks(events: streaming.body.serverSentEvents)
        }
    }

    /// Reads one `data:` payload of a streamed answer.
    static func chunks(in data: String) -> [QueryChunk] {
        guard !data.isEmpty, data != "[DONE]",
            let value = JSONValue.parseLeniently(Data(data.utf8))
        else { return [] }
        let items: [JSONValue]
        if case .array(let array) = value { items = array } else { items = [value] }
        return items.compactMap { item -> QueryChunk? in
            guard case .object(let object) = item else { return nil }
            switch object["type"]?.stringValue {
            case "text":
                return object["content"]?.stringValue.map(QueryChunk.text)
            case "citation":
                return .citation(object)
            case "sessionId", "session_id", "session":
                return (object["sessionId"]?.stringValue ?? object["content"]?.stringValue).map(QueryChunk.sessionID)
            default:
                if let message = object["message"]?.stringValue {
                    var sources: [JSONValue] = []
                    if case .array(let list)? = object["sources"] { sources = list }
                    return .answer(QueryAnswer(message: message, sources: sources, sessionID: object["sessionId"]?.stringValue))
                }
                return object["sessionId"]?.stringValue.map(QueryChunk.sessionID)
            }
        }
    }

    /// `POST /search`: code locations matching a query.
    public func search(_ request: SearchRequest, timeout: Duration? = nil) async throws -> [JSONValue] {
        let response = try await send(.post, "/search", body: request, what: "searching", timeout: timeout ?? configuration.queryTimeout)
        guard let value = JSONValue.parseLeniently(response.body) else {
            throw GreptileError(.invalidResponse, "Greptile's search answer is not JSON")
        }
        if case .array(let results) = value { return results }
        if case .array(let results)? = value.objectValue?["results"] { return results }
        throw GreptileError(.invalidResponse, "Greptile's search answer is not a list of results")
    }

    // MARK: Plumbing

    private func httpRequest<Body: Encodable>(_ method: HTTPRequest.Method, _ path: String, body: Body?, timeout: Duration?) throws -> HTTPRequest {
        guard let key = configuration.greptileAPIKey else {
            throw GreptileError(.missingCredentials, "GREPTILE_API_KEY is not set: export it in the worker's environment and restart")
        }
        guard let token = configuration.githubToken else {
            throw GreptileError(.missingCredentials, "GITHUB_TOKEN is not set: Greptile needs it to read the repository; export it and restart")
        }
        var headers: HTTPHeaders = ["Authorization": "Bearer \(key)", "X-GitHub-Token": token, "Accept": "application/json"]
        var data: Data?
        if let body {
            headers.add("Content-Type", "application/json")
            data = try (body as? any UpstreamBody).map { Data($0.jsonValue.jsonText().utf8) } ?? JSONCoding.encoder.encode(body)
        }
        return HTTPRequest(method: method, url: configuration.greptileBaseURL + path, headers: headers, body: data, timeout: timeout)
    }

    private func send<Body: Encodable>(
        _ method: HTTPRequest.Method, _ path: String, body: Body?, what: String, timeout: Duration? = nil
    ) async throws -> HTTPResponse {
        let request = try httpRequest(method, path, body: body, timeout: timeout ?? configuration.callTimeout)
        let response = try await caller.call(request, what: what)
        guard (200..<300).contains(response.status) else { throw failure(response, what: what) }
        return response
    }

    private func failure(_ response: HTTPResponse, what: String) -> GreptileError {
        let detail = UpstreamCaller.detail(of: response)
        switch response.status {
        case 401, 403:
            return GreptileError(.unauthorized, "GREPTILE_API_KEY was rejected (HTTP \(response.status)): \(detail)", status: response.status)
        case 404:
            return GreptileError(.notFound, "repository not found or not indexed (\(detail)); index it first with index_repository", status: 404)
        default:
            return GreptileError(.badRequest, "Greptile refused \(what) (HTTP \(response.status)): \(detail)", status: response.status)
        }
    }

    private func object(_ response: HTTPResponse, what: String) throws -> JSONObject {
        guard let object = JSONValue.parseLeniently(response.body)?.objectValue else {
            throw GreptileError(.invalidResponse, "Greptile's answer to \(what) is not a JSON object")
        }
        return object
    }
}

/// A streamed answer's chunks, read from its events as the reader asks for them.
public struct QueryChunks: AsyncSequence, Sendable {
    public typealias Element = QueryChunk
    let events: ServerSentEvents

    public struct AsyncIterator: AsyncIteratorProtocol {
        var events: ServerSentEvents.AsyncIterator
        var ready: [QueryChunk] = []

        public mutating func next() async throws -> QueryChunk? {
            while ready.isEmpty {
                guard let event = try await events.next() else { return nil }
                ready = GreptileClient.chunks(in: event.data)
            }
            return ready.removeFirst()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(events: events.makeAsyncIterator())
    }
}

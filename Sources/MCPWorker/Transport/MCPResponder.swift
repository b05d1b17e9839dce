import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import Logging
import MCP
import NIOCore
import ServerRuntime
import ServiceMetrics
import SessionClient
import SessionModel
import SignIn

/// A request's context on a worker: Hummingbird's, plus the connection it arrived on (a call
/// of the stateless revision stops when its client closes the connection).
public struct WorkerRequestContext: Hummingbird.RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The worker's HTTP surface: `/mcp` (MCP over Streamable HTTP), `/health`, `/ring`,
/// `/metrics` and `/admin`.
///
/// `/mcp` serves the session revisions and the stateless 2026-07-28 on one path
/// (docs/ARCHITECTURE.md, "Two revisions on one path"); nothing of a session is kept in this
/// process. The caller is decided once (`Authentication`) and refusals become HTTP here, at
/// the edge.
public struct MCPResponder: HTTPResponder {
    public typealias Context = WorkerRequestContext
    let worker: WorkerDependencies

    static let sessionHeader = HTTPField.Name("MCP-Session-Id")!
    static let versionHeader = HTTPField.Name("MCP-Protocol-Version")!
    static let methodHeader = HTTPField.Name("Mcp-Method")!
    static let nameHeader = HTTPField.Name("Mcp-Name")!
    static let lastEventHeader = HTTPField.Name("Last-Event-ID")!
    static let requestIDHeader = HTTPField.Name(RequestCorrelation.header)!
    static let instructions = """
        Tools to ask questions about, and search, codebases indexed by Greptile. Index a repository \
        first (index_repository), check it is ready (get_repository_info), then query_repository; \
        pass the returned _session_id as session_id for follow-up questions.
        """

    public func respond(to request: Request, context: Context) async throws -> Response {
        let start = worker.clock.now
        let (route, response) = await RequestCorrelation.with(request.headers[Self.requestIDHeader]) {
            await self.route(request, channel: context.channel)
        }
        worker.metrics.record(route: route, method: request.method.rawValue, status: response.status.code, duration: worker.clock.elapsed(since: start))
        return response
    }

    /// The route's label for the metrics (a fixed set, whatever paths clients try) and its answer.
    private func route(_ request: Request, channel: any Channel) async -> (String, Response) {
        let path = request.uri.path
        switch path {
        case "/mcp", "/mcp/":
            return ("/mcp", await mcp(request, channel: channel))
        case "/health":
            guard request.method == .get || request.method == .head else { return ("/health", Self.plainError(.methodNotAllowed, "use GET", allow: "GET")) }
            return ("/health", Self.json(await worker.health()))
        case "/ring":
            guard request.method == .get else { return ("/ring", Self.plainError(.methodNotAllowed, "use GET", allow: "GET")) }
            guard await worker.authentication.caller(authorization: request.headers[.authorization])?.toolsPrincipal != nil else {
                return ("/ring", Self.plainError(.unauthorized, "send Authorization: Bearer <API key>"))
            }
            return ("/ring", Self.json(worker.ring))
        case "/metrics":
            guard request.method == .get else { return ("/metrics", Self.plainError(.methodNotAllowed, "use GET", allow: "GET")) }
            await worker.recordGauges()
            var metrics = Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: worker.metrics.exposition())))
            metrics.headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return ("/metrics", metrics)
        case _ where SignInService.paths.contains(path):
            guard let signIn = worker.signIn else { return ("unknown", Self.plainError(.notFound, "sign-in is not configured on this server")) }
            let label = path.hasPrefix("/.well-known/") ? "/.well-known" : path
            return (label, await SignInRoutes.respond(to: request, with: signIn))
        case _ where path.hasPrefix("/admin/"):
            let rest = path.dropFirst("/admin/".count)
            let first = rest.split(separator: "/").first.map(String.init) ?? ""
            let label = "/admin/" + (["principals", "export", "import", "usage", "usage.html"].contains(first) ? first : "unknown")
            return (label, await Administration(worker: worker).respond(to: request, path: rest))
        default:
            return ("unknown", Self.plainError(.notFound, "no route \(path.prefix(200)); the MCP endpoint is /mcp"))
        }
    }

    // MARK: /mcp

    private func mcp(_ request: Request, channel: any Channel) async -> Response {
        guard worker.allows(origin: request.headers[.origin]) else {
            return Self.rpcError(.forbidden, nil, .invalidRequest("Forbidden: Origin \(request.headers[.origin] ?? "") is not allowed"))
        }
        guard let principal = await worker.authentication.caller(authorization: request.headers[.authorization])?.toolsPrincipal else {
            let how = worker.signIn == nil ? "send Authorization: Bearer <API key>" : "sign in (OAuth), or send Authorization: Bearer <API key>"
            var response = Self.rpcError(.unauthorized, nil, RPCError(-32001, "Unauthorized: \(how)"))
            response.headers[.wwwAuthenticate] = worker.authentication.challenge
            return response
        }
        if let version = request.headers[Self.versionHeader], ModernTransport.versions.contains(version), request.method != .post {
            var response = Self.rpcError(.methodNotAllowed, nil, .invalidRequest("Method Not Allowed: revision \(version) takes POST only"))
            response.headers[.allow] = "POST"
            return response
        }
        switch request.method {
        case .post:
            return await post(request, principal: principal, channel: channel)
        case .delete:
            return await delete(request, principal: principal)
        case .get where request.headers[Self.lastEventHeader] != nil:
            return await resume(request, principal: principal)
        default:
            // No standalone server-to-client stream is offered: this server sends nothing
            // unasked. GET serves only to resume a stream (with Last-Event-ID).
            var response = Self.rpcError(
                .methodNotAllowed, nil, .invalidRequest("Method Not Allowed: use POST (DELETE ends a session; GET with Last-Event-ID resumes a stream)"))
            response.headers[.allow] = "POST, DELETE"
            return response
        }
    }

    private func post(_ request: Request, principal: String, channel: any Channel) async -> Response {
        let message: IncomingMessage
        switch await incomingMessage(request) {
        case .success(let read): message = read
        case .failure(let refusal): return refusal.response
        }
        return await traced(message, request: request, principal: principal) {
            await answer(message, request: request, principal: principal, channel: channel)
        }
    }

    /// A POST's message, read: served under its revision.
    private func answer(_ message: IncomingMessage, request: Request, principal: String, channel: any Channel) async -> Response {
        if ModernTransport.applies(
            versionHeader: request.headers[Self.versionHeader], sessionHeader: request.headers[Self.sessionHeader], params: message.params)
        {
            return await stateless(message, request: request, principal: principal, channel: channel)
        }
        if let version = request.headers[Self.versionHeader], !WorkerDependencies.protocolVersions.contains(version) {
            return Self.rpcError(
                .badRequest, nil,
                .invalidRequest(
                    "Bad Request: unsupported MCP-Protocol-Version \(version.prefix(40)); supported: \(WorkerDependencies.protocolVersions.joined(separator: ", "))"
                ))
        }
        if case .request(let id, "initialize", let params) = message {
            return await initialize(id: id, params: params, principal: principal)
        }
        guard let sessionID = request.headers[Self.sessionHeader] else {
            return Self.rpcError(.badRequest, message.requestID, .invalidRequest("Bad Request: MCP-Session-Id header is required (send initialize first)"))
        }
        return await sessionMessage(message, sessionID: sessionID, principal: principal)
    }

    /// The answer that refuses a request before it is read as a message.
    struct Refusal: Error, @unchecked Sendable {
        let response: Response
    }

    /// The one JSON-RPC message a POST carries, or the answer that refuses the request (its
    /// media types, its size, JSON-RPC it is not).
    private func incomingMessage(_ request: Request) async -> Result<IncomingMessage, Refusal> {
        guard let type = request.headers[.contentType], Self.mediaType(type) == "application/json" else {
            return .failure(
                Refusal(
                    response: Self.rpcError(.unsupportedMediaType, nil, .invalidRequest("Unsupported Media Type: Content-Type must be application/json"))))
        }
        if let accept = request.headers[.accept], !Self.acceptsJSON(accept) {
            return .failure(
                Refusal(
                    response: Self.rpcError(.notAcceptable, nil, .invalidRequest("Not Acceptable: Accept must allow application/json and text/event-stream"))))
        }
        let limit = worker.configuration.maxBodyBytes
        let tooLarge = Refusal(response: Self.rpcError(.contentTooLarge, nil, .invalidRequest("Payload Too Large: the limit is \(limit) bytes")))
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { return .failure(tooLarge) }
        let body: Data
        do {
            body = Data(try await request.body.collect(upTo: limit).readableBytesView)
        } catch {
            return .failure(tooLarge)
        }
        switch JSONRPC.parse(body) {
        case .success(let parsed): return .success(parsed)
        case .failure(let failure): return .failure(Refusal(response: Self.rpcError(.badRequest, failure.id, failure.error)))
        }
    }

    /// A `resources/...` request's result: the caller's conversations (`ConversationResources`).
    func resources(_ method: String, principal: String, params: JSONValue?) async throws -> JSONValue {
        switch method {
        case "resources/list": try await worker.resources.list(principal: principal, params: params)
        case "resources/read": try await worker.resources.read(principal: principal, params: params)
        default: ConversationResources.templates
        }
    }

    /// A failure of a request other than a tool call, as the JSON-RPC error it answers.
    static func rpcError(_ error: any Error) -> RPCError {
        switch error {
        case let error as RPCError: error
        case let error as SessionError: .internalError("the session store failed: \(error.message)")
        default: .internalError("the request failed")
        }
    }

    // MARK: Answers

    static func mediaType(_ value: String) -> String {
        value.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
    }

    static func acceptsJSON(_ accept: String) -> Bool {
        accept.split(separator: ",").map { mediaType(String($0)) }.contains { ["application/json", "application/*", "*/*", "text/event-stream"].contains($0) }
    }

    static func json(_ value: some Encodable) -> Response {
        json(bytes: (try? JSONCoding.encoder.encode(value)) ?? Data())
    }

    static func json(bytes: Data, status: HTTPResponse.Status = .ok) -> Response {
        var response = Response(status: status, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        response.headers[.contentType] = "application/json"
        return response
    }

    static func rpcError(_ status: HTTPResponse.Status, _ id: ID?, _ error: RPCError) -> Response {
        json(bytes: JSONRPC.error(id: id, error), status: status)
    }

    /// A session that cannot be served, as the HTTP answer that refuses it.
    static func refusing(_ refusal: SessionRefusal, _ id: ID?) -> Response {
        switch refusal {
        case .notFound: rpcError(.notFound, id, .sessionNotFound)
        case .storeFailed(let message): rpcError(.serviceUnavailable, id, .internalError("the session store failed: \(message)"))
        }
    }

    static func plainError(_ status: HTTPResponse.Status, _ message: String, allow: String? = nil) -> Response {
        var response = json(bytes: Data(#"{"error":{"code":\#(status.code),"message":\#(String(reflecting: message))}}"#.utf8), status: status)
        if let allow { response.headers[.allow] = allow }
        return response
    }
}

extension IncomingMessage {
    var params: JSONValue? {
        switch self {
        case .request(_, _, let params), .notification(_, let params): params
        case .response: nil
        }
    }

    var requestID: ID? {
        if case .request(let id, _, _) = self { return id }
        return nil
    }
}

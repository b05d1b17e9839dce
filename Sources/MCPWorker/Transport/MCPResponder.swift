import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import Logging
import MCP
import NIOCore
import ServiceMetrics
import SessionClient
import SessionModel

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

/// The worker's HTTP surface: `/mcp` (MCP over Streamable HTTP), `/health`, `/metrics`.
///
/// The transport follows the Streamable HTTP rules of MCP's session-based revisions
/// (2025-11-25, 2025-06-18, 2025-03-26) and of the stateless 2026-07-28 (docs/ARCHITECTURE.md,
/// "Two revisions on one path"). Nothing of a session is kept in this process: each request
/// loads its transport session from the durable hosts.
public struct MCPResponder: HTTPResponder {
    public typealias Context = WorkerRequestContext
    let worker: WorkerDependencies

    static let sessionHeader = HTTPField.Name("MCP-Session-Id")!
    static let instructions = """
        Tools to ask questions about, and search, codebases indexed by Greptile. Index a repository \
        first (index_repository), check it is ready (get_repository_info), then query_repository; \
        pass the returned _session_id as session_id for follow-up questions.
        """
    static let versionHeader = HTTPField.Name("MCP-Protocol-Version")!

    public func respond(to request: Request, context: Context) async throws -> Response {
        let start = ContinuousClock.now
        let path = request.uri.path
        let route: String
        let response: Response
        switch path {
        case "/mcp", "/mcp/":
            route = "/mcp"
            response = await mcp(request, channel: context.channel)
        case "/health":
            route = "/health"
            response =
                request.method == .get || request.method == .head
                ? Self.json(await worker.health()) : Self.plainError(.methodNotAllowed, "use GET", allow: "GET")
        case "/ring":
            route = "/ring"
            if request.method != .get {
                response = Self.plainError(.methodNotAllowed, "use GET", allow: "GET")
            } else if worker.principal(authorization: request.headers[.authorization]) == nil {
                response = Self.plainError(.unauthorized, "send Authorization: Bearer <API key>")
            } else {
                response = Self.json(worker.ring)
            }
        case "/metrics":
            route = "/metrics"
            var metrics = Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: worker.metrics.exposition())))
            metrics.headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            response = request.method == .get ? metrics : Self.plainError(.methodNotAllowed, "use GET", allow: "GET")
        case _ where path.hasPrefix("/admin/"):
            let rest = path.dropFirst("/admin/".count)
            // A fixed set of labels, whatever paths clients try.
            let first = rest.split(separator: "/").first.map(String.init) ?? ""
            route = "/admin/" + (["principals", "export", "import", "usage", "usage.html"].contains(first) ? first : "unknown")
            response = await Administration(worker: worker).respond(to: request, path: rest)
        default:
            route = "unknown"
            response = Self.plainError(.notFound, "no route \(path.prefix(200)); the MCP endpoint is /mcp")
        }
        worker.metrics.record(route: route, method: request.method.rawValue, status: response.status.code, since: start)
        return response
    }

    // MARK: /mcp

    private func mcp(_ request: Request, channel: any Channel) async -> Response {
        guard worker.allows(origin: request.headers[.origin]) else {
            return Self.rpcError(.forbidden, nil, .invalidRequest("Forbidden: Origin \(request.headers[.origin] ?? "") is not allowed"))
        }
        guard let principal = worker.principal(authorization: request.headers[.authorization]) else {
            var response = Self.rpcError(.unauthorized, nil, RPCError(-32001, "Unauthorized: send Authorization: Bearer <API key>"))
            response.headers[.wwwAuthenticate] = #"Bearer realm="greptile-mcp""#
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
        if ModernTransport.applies(
            versionHeader: request.headers[Self.versionHeader], sessionHeader: request.headers[Self.sessionHeader], params: message.params)
        {
            return await modern(message, request: request, principal: principal, channel: channel)
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
        if case .request(let id, "tools/call", let params) = message, !Self.wantsStream(params) {
            return await admittedCall(id: id, params: params, principal: principal, sessionID: sessionID)
        }
        switch await loadSession(sessionID, principal: principal, requestID: message.requestID) {
        case .success(let session): return await sessionMessage(message, in: session, principal: principal)
        case .failure(let refusal): return refusal.response
        }
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

    /// A message of a session-revision client, in its transport session.
    private func sessionMessage(_ message: IncomingMessage, in session: TransportSession, principal: String) async -> Response {
        switch message {
        case .notification("notifications/cancelled", let params):
            await cancel(params, in: session)
            return Response(status: .accepted)
        case .notification(let method, _):
            if method == "notifications/initialized" { try? await worker.sessions.markInitialized(session) }
            return Response(status: .accepted)
        case .response:
            return Response(status: .accepted)
        case .request(let id, "tools/call", let params) where Self.wantsStream(params):
            do {
                let call = try JSONRPC.callParameters(params)
                return await streamedCall(id: id, call: call, params: params, principal: principal, session: session, clientGone: nil) {
                    JSONRPC.toolResult(id: id, $0)
                }
            } catch {
                return Self.json(bytes: JSONRPC.error(id: id, error))
            }
        case .request(let id, let method, let params):
            let reply = await handle(method: method, id: id, params: params, principal: principal, session: session)
            return Self.json(bytes: reply)
        }
    }

    /// A request's transport session, or the answer that refuses it (404, 503).
    private func loadSession(_ sessionID: String, principal: String, requestID: ID?) async -> Result<TransportSession, SessionRefusal> {
        do {
            guard let found = try await worker.sessions.load(sessionID, principal: principal) else {
                return .failure(SessionRefusal(response: Self.rpcError(.notFound, requestID, .sessionNotFound)))
            }
            return .success(found)
        } catch {
            return .failure(
                SessionRefusal(response: Self.rpcError(.serviceUnavailable, requestID, .internalError("the session store failed: \(error.message)"))))
        }
    }

    /// A `tools/call` in a session, whose session check rides along with the call instead of
    /// coming before it: the session is loaded while the call reads what it needs (a
    /// conversation's history), and the call waits for the check before it does anything
    /// (asks Greptile, writes). Whatever the call made of its request, an unknown session
    /// still gets 404 with nothing done; a known one saves a host round trip of latency.
    private func admittedCall(id: ID, params: Value?, principal: String, sessionID: String) async -> Response {
        let gate = SessionCheck()
        return await withTaskGroup(of: Void.self) { group in
            group.addTask { gate.settle(await self.loadSession(sessionID, principal: principal, requestID: id)) }
            let reply: Data
            do {
                let call = try JSONRPC.callParameters(params)
                let tools = worker.tools
                let result = try await worker.calls.run(.init(request: (sessionID, id))) {
                    try await tools.call(call.name, arguments: call.arguments, principal: principal, admission: { try await gate.session() })
                }
                reply = JSONRPC.toolResult(id: id, result)
            } catch let refusal as SessionRefusal {
                return refusal.response
            } catch let error as RPCError {
                reply = JSONRPC.error(id: id, error)
            } catch {
                reply = JSONRPC.error(id: id, .requestCancelled)
            }
            // A call refused before it looked at its session (bad parameters) is still answered
            // for the session first.
            if case .failure(let refusal) = await gate.outcome() { return refusal.response }
            return Self.json(bytes: reply)
        }
    }

    private func initialize(id: ID, params: Value?, principal: String) async -> Response {
        let parameters: Initialize.Parameters
        do throws(RPCError) {
            // The SDK's decoder fills in what is missing; the specification requires these.
            guard case .string? = params?.objectValue?["protocolVersion"],
                case .string? = params?.objectValue?["clientInfo"]?.objectValue?["name"]
            else {
                throw RPCError.invalidParams("Invalid params: initialize needs protocolVersion, capabilities and clientInfo {name, version}")
            }
            parameters = try JSONRPC.decode(Initialize.Parameters.self, from: params)
        } catch {
            return Self.json(bytes: JSONRPC.error(id: id, error))
        }
        let version =
            WorkerDependencies.protocolVersions.contains(parameters.protocolVersion)
            ? parameters.protocolVersion : WorkerDependencies.protocolVersions[0]
        let session: TransportSession
        do {
            session = try await worker.sessions.create(
                principal: principal, protocolVersion: version, clientName: parameters.clientInfo.name,
                clientVersion: parameters.clientInfo.version)
        } catch {
            return Self.rpcError(.serviceUnavailable, id, .internalError("could not start a session: \(error.message)"))
        }
        let result = Initialize.Result(
            protocolVersion: version,
            capabilities: Server.Capabilities(resources: .init(subscribe: false, listChanged: false), tools: .init(listChanged: false)),
            serverInfo: Server.Info(name: "greptile-mcp", version: WorkerServer.version, title: "Greptile code search"),
            instructions: Self.instructions)
        var response = Self.json(bytes: JSONRPC.result(id: id, result))
        response.headers[Self.sessionHeader] = session.id
        worker.logger.info("session started", metadata: ["principal": "\(principal)", "protocol": "\(version)", "client": "\(parameters.clientInfo.name)"])
        return response
    }

    /// A request inside a session: its JSON-RPC answer.
    private func handle(method: String, id: ID, params: Value?, principal: String, session: TransportSession) async -> Data {
        switch method {
        case "ping":
            return JSONRPC.result(id: id, Empty())
        case "tools/list":
            return JSONRPC.result(id: id, ListTools.Result(tools: GreptileTools.definitions))
        case "tools/call":
            do {
                let call = try JSONRPC.callParameters(params)
                let tools = worker.tools
                let result = try await worker.calls.run(.init(request: (session.id, id))) {
                    try await tools.call(call.name, arguments: call.arguments, principal: principal)
                }
                return JSONRPC.toolResult(id: id, result)
            } catch let error as RPCError {
                return JSONRPC.error(id: id, error)
            } catch {
                return JSONRPC.error(id: id, .requestCancelled)
            }
        case "resources/list", "resources/read", "resources/templates/list":
            do {
                return JSONRPC.result(id: id, try await resources(method, principal: principal, params: params))
            } catch {
                return JSONRPC.error(id: id, Self.rpcError(error))
            }
        case "initialize":
            return JSONRPC.error(id: id, .invalidRequest("initialize is not allowed inside a session"))
        default:
            return JSONRPC.error(id: id, .methodNotFound(method))
        }
    }

    /// A `resources/...` request's result: the caller's conversations (`ConversationResources`).
    private func resources(_ method: String, principal: String, params: Value?) async throws -> JSONValue {
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

    /// `notifications/cancelled`: stops the request here, or marks it for the worker running it.
    private func cancel(_ params: Value?, in session: TransportSession) async {
        let requestID: ID
        switch params?.objectValue?["requestId"] {
        case .string(let text)?: requestID = .string(text)
        case .int(let number)?: requestID = .number(number)
        default: return
        }
        let key = InFlightCalls.key(session: session.id, request: requestID)
        if worker.calls.inFlight.cancel(key) {
            worker.logger.info("request cancelled by the client", metadata: ["principal": "\(session.principal)"])
            return
        }
        try? await worker.sessions.requestCancel(session, request: InFlightCalls.text(of: requestID))
    }

    // MARK: Resuming a stream

    static let lastEventHeader = HTTPField.Name("Last-Event-ID")!

    /// `GET` with `Last-Event-ID`: the events of that stream after that one, from the
    /// session's journal in the durable hosts, whichever worker sent them; then, while the
    /// call still runs, the events it goes on sending, until its response.
    private func resume(_ request: Request, principal: String) async -> Response {
        guard let sessionID = request.headers[Self.sessionHeader] else {
            return Self.rpcError(.badRequest, nil, .invalidRequest("Bad Request: MCP-Session-Id header is required"))
        }
        let session: TransportSession
        do {
            guard let found = try await worker.sessions.load(sessionID, principal: principal) else {
                return Self.rpcError(.notFound, nil, .sessionNotFound)
            }
            session = found
        } catch {
            return Self.rpcError(.serviceUnavailable, nil, .internalError("the session store failed: \(error.message)"))
        }
        let lastEventID = request.headers[Self.lastEventHeader] ?? ""
        guard let (stream, after) = EventJournal.parse(lastEventID) else {
            return Self.rpcError(.badRequest, nil, .invalidRequest("Bad Request: Last-Event-ID '\(lastEventID.prefix(64))' is not an event id of this server"))
        }
        let journal = worker.journal
        let first: (events: [(id: String, data: String)], ended: Bool)
        do {
            guard let found = try await journal.events(session: session.id, stream: stream, after: after) else {
                return Self.rpcError(.notFound, nil, .invalidRequest("Not Found: no stream \(stream) in this session (it may have expired)"))
            }
            first = found
        } catch {
            return Self.rpcError(.serviceUnavailable, nil, .internalError("the session store failed: \(error.message)"))
        }
        let sessionKey = session.id
        var response = Response(
            status: .ok,
            body: ResponseBody { writer in
                var batch = first
                var last = after
                var idle = ContinuousClock.now
                let deadline = ContinuousClock.now + .seconds(600)
                while true {
                    for event in batch.events {
                        try await writer.write(ByteBuffer(string: "id: \(event.id)\ndata: \(event.data)\n\n"))
                        last = EventJournal.parse(event.id)?.number ?? last
                        idle = .now
                    }
                    if batch.ended || ContinuousClock.now > deadline { break }
                    if ContinuousClock.now - idle > .seconds(1) {
                        try await writer.write(ByteBuffer(string: ": keepalive\n\n"))
                        idle = .now
                    }
                    try await Task.sleep(for: .milliseconds(100))
                    guard let next = try? await journal.events(session: sessionKey, stream: stream, after: last) else { break }
                    batch = next
                }
                try await writer.finish(nil)
            })
        response.headers[.contentType] = "text/event-stream"
        response.headers[.cacheControl] = "no-cache"
        return response
    }

    // MARK: Revision 2026-07-28

    static let methodHeader = HTTPField.Name("Mcp-Method")!
    static let nameHeader = HTTPField.Name("Mcp-Name")!

    /// A request of the stateless revision: validated by its ladder, answered without a session.
    private func modern(_ message: IncomingMessage, request: Request, principal: String, channel: any Channel) async -> Response {
        guard case .request(let id, let method, let params) = message else {
            // Clients of this revision post no responses; a stray notification changes nothing.
            return Response(status: .accepted)
        }
        let headers = (request.headers[Self.versionHeader], request.headers[Self.methodHeader], request.headers[Self.nameHeader])
        if let error = ModernTransport.validate(method: method, params: params, headers: headers) {
            return Self.rpcError(HTTPResponse.Status(code: ModernTransport.status(of: error.code)), id, error)
        }
        switch method {
        case "server/discover":
            return Self.json(bytes: JSONRPC.result(id: id, ModernTransport.discoverResult(instructions: Self.instructions)))
        case "tools/list":
            return Self.json(
                bytes: JSONRPC.result(id: id, ModernTransport.complete(ListTools.Result(tools: GreptileTools.definitions), cacheFor: .seconds(300))))
        case "resources/list", "resources/read", "resources/templates/list":
            do {
                let result = try await resources(method, principal: principal, params: params)
                // Each principal's conversations are its own, and change with every turn.
                let cache: (Duration, String)? = method == "resources/read" ? nil : (.zero, method == "resources/list" ? "private" : "public")
                return Self.json(bytes: JSONRPC.result(id: id, ModernTransport.complete(result, cacheFor: cache?.0, scope: cache?.1 ?? "public")))
            } catch {
                let failure = Self.rpcError(error)
                return Self.rpcError(HTTPResponse.Status(code: ModernTransport.status(of: failure.code)), id, failure)
            }
        case "tools/call":
            do {
                let call = try JSONRPC.callParameters(params)
                // In this revision the connection is the call: a client that closes it cancels it.
                let clientGone = await ConnectionGuard.closed(on: channel)
                if Self.wantsStream(params) {
                    return await streamedCall(id: id, call: call, params: params, principal: principal, session: nil, clientGone: clientGone) {
                        JSONRPC.toolResult(id: id, $0, extra: ["resultType": "complete"])
                    }
                }
                let tools = worker.tools
                let result = try await worker.calls.run(.init(clientGone: clientGone.map { [$0] } ?? [])) {
                    try await tools.call(call.name, arguments: call.arguments, principal: principal)
                }
                return Self.json(bytes: JSONRPC.toolResult(id: id, result, extra: ["resultType": "complete"]))
            } catch let error as RPCError {
                return Self.rpcError(HTTPResponse.Status(code: ModernTransport.status(of: error.code)), id, error)
            } catch {
                // Nobody is left to read this answer.
                return Self.rpcError(.internalServerError, id, .requestCancelled)
            }
        default:
            return Self.rpcError(.notFound, id, .methodNotFound(method))
        }
    }

    private func delete(_ request: Request, principal: String) async -> Response {
        guard let sessionID = request.headers[Self.sessionHeader] else {
            return Self.rpcError(.badRequest, nil, .invalidRequest("Bad Request: MCP-Session-Id header is required"))
        }
        do {
            guard let session = try await worker.sessions.load(sessionID, principal: principal) else {
                return Self.rpcError(.notFound, nil, .sessionNotFound)
            }
            try await worker.sessions.end(session)
            await worker.journal.clear(session: session.id)
            worker.logger.info("session ended", metadata: ["principal": "\(principal)"])
            return Response(status: .noContent)
        } catch {
            return Self.rpcError(.serviceUnavailable, nil, .internalError("the session store failed: \(error.message)"))
        }
    }

    // MARK: Helpers

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

    static func plainError(_ status: HTTPResponse.Status, _ message: String, allow: String? = nil) -> Response {
        var response = json(bytes: Data(#"{"error":{"code":\#(status.code),"message":\#(String(reflecting: message))}}"#.utf8), status: status)
        if let allow { response.headers[.allow] = allow }
        return response
    }
}

extension IncomingMessage {
    var params: Value? {
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

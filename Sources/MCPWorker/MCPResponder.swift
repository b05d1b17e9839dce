import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MCP
import NIOCore
import SessionClient
import ServiceMetrics
import SessionModel

/// The worker's HTTP surface: `/mcp` (MCP over Streamable HTTP), `/health`, `/metrics`.
///
/// The transport follows ../shared/reference/mcp-transport.md for the session-based
/// revisions (2025-11-25, 2025-06-18, 2025-03-26). Nothing of a session is kept in this
/// process: each request loads its transport session from the durable hosts.
public struct MCPResponder: HTTPResponder {
    public typealias Context = BasicRequestContext
    let worker: WorkerState

    static let sessionHeader = HTTPField.Name("MCP-Session-Id")!
    static let versionHeader = HTTPField.Name("MCP-Protocol-Version")!

    public func respond(to request: Request, context: Context) async throws -> Response {
        let start = ContinuousClock.now
        let path = request.uri.path
        let route: String
        let response: Response
        switch path {
        case "/mcp", "/mcp/":
            route = "/mcp"
            response = await mcp(request)
        case "/health":
            route = "/health"
            response = request.method == .get || request.method == .head
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
        default:
            route = "unknown"
            response = Self.plainError(.notFound, "no route \(path.prefix(200)); the MCP endpoint is /mcp")
        }
        worker.metrics.record(route: route, method: request.method.rawValue, status: response.status.code, since: start)
        return response
    }

    // MARK: /mcp

    private func mcp(_ request: Request) async -> Response {
        guard worker.allows(origin: request.headers[.origin]) else {
            return Self.rpcError(.forbidden, nil, .invalidRequest("Forbidden: Origin \(request.headers[.origin] ?? "") is not allowed"))
        }
        guard let principal = worker.principal(authorization: request.headers[.authorization]) else {
            var response = Self.rpcError(.unauthorized, nil, RPCError(-32001, "Unauthorized: send Authorization: Bearer <API key>"))
            response.headers[.wwwAuthenticate] = #"Bearer realm="greptile-mcp""#
            return response
        }
        switch request.method {
        case .post:
            return await post(request, principal: principal)
        case .delete:
            return await delete(request, principal: principal)
        default:
            // No standalone server-to-client stream is offered: this server sends nothing unasked.
            var response = Self.rpcError(.methodNotAllowed, nil, .invalidRequest("Method Not Allowed: use POST (or DELETE to end a session)"))
            response.headers[.allow] = "POST, DELETE"
            return response
        }
    }

    private func post(_ request: Request, principal: String) async -> Response {
        guard let type = request.headers[.contentType], Self.mediaType(type) == "application/json" else {
            return Self.rpcError(.unsupportedMediaType, nil, .invalidRequest("Unsupported Media Type: Content-Type must be application/json"))
        }
        if let accept = request.headers[.accept], !Self.acceptsJSON(accept) {
            return Self.rpcError(.notAcceptable, nil, .invalidRequest("Not Acceptable: Accept must allow application/json and text/event-stream"))
        }
        let limit = worker.configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            return Self.rpcError(.contentTooLarge, nil, .invalidRequest("Payload Too Large: the limit is \(limit) bytes"))
        }
        let body: Data
        do {
            body = Data(try await request.body.collect(upTo: limit).readableBytesView)
        } catch {
            return Self.rpcError(.contentTooLarge, nil, .invalidRequest("Payload Too Large: the limit is \(limit) bytes"))
        }
        let message: IncomingMessage
        switch JSONRPC.parse(body) {
        case .success(let parsed): message = parsed
        case .failure(let failure): return Self.rpcError(.badRequest, failure.id, failure.error)
        }
        if let version = request.headers[Self.versionHeader], !WorkerState.protocolVersions.contains(version) {
            return Self.rpcError(.badRequest, nil, .invalidRequest(
                "Bad Request: unsupported MCP-Protocol-Version \(version.prefix(40)); supported: \(WorkerState.protocolVersions.joined(separator: ", "))"))
        }

        if case .request(let id, "initialize", let params) = message {
            return await initialize(id: id, params: params, principal: principal)
        }
        guard let sessionID = request.headers[Self.sessionHeader] else {
            return Self.rpcError(.badRequest, message.requestID, .invalidRequest("Bad Request: MCP-Session-Id header is required (send initialize first)"))
        }
        let session: TransportSession
        do {
            guard let found = try await worker.sessions.load(sessionID, principal: principal) else {
                return Self.rpcError(.notFound, message.requestID, .sessionNotFound)
            }
            session = found
        } catch {
            return Self.rpcError(.serviceUnavailable, message.requestID, .internalError("the session store failed: \(error.message)"))
        }

        switch message {
        case .notification(let method, _):
            if method == "notifications/initialized" { try? await worker.sessions.markInitialized(session) }
            return Response(status: .accepted)
        case .response:
            return Response(status: .accepted)
        case .request(let id, let method, let params):
            let reply = await handle(method: method, id: id, params: params, principal: principal)
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
        let version = WorkerState.protocolVersions.contains(parameters.protocolVersion)
            ? parameters.protocolVersion : WorkerState.protocolVersions[0]
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
            capabilities: Server.Capabilities(tools: .init(listChanged: false)),
            serverInfo: Server.Info(name: "greptile-mcp", version: WorkerServer.version, title: "Greptile code search"),
            instructions: """
                Tools to ask questions about, and search, codebases indexed by Greptile. Index a repository \
                first (index_repository), check it is ready (get_repository_info), then query_repository; \
                pass the returned _session_id as session_id for follow-up questions.
                """)
        var response = Self.json(bytes: JSONRPC.result(id: id, result))
        response.headers[Self.sessionHeader] = session.id
        worker.logger.info("session started", metadata: ["principal": "\(principal)", "protocol": "\(version)", "client": "\(parameters.clientInfo.name)"])
        return response
    }

    /// A request inside a session: its JSON-RPC answer.
    private func handle(method: String, id: ID, params: Value?, principal: String) async -> Data {
        switch method {
        case "ping":
            return JSONRPC.result(id: id, Empty())
        case "tools/list":
            return JSONRPC.result(id: id, ListTools.Result(tools: GreptileTools.definitions))
        case "tools/call":
            do {
                let call = try JSONRPC.decode(CallTool.Parameters.self, from: params)
                let result = try await worker.tools.call(call.name, arguments: call.arguments, principal: principal)
                return JSONRPC.result(id: id, result)
            } catch let error as RPCError {
                return JSONRPC.error(id: id, error)
            } catch {
                return JSONRPC.error(id: id, .internalError("the call was cancelled"))
            }
        case "initialize":
            return JSONRPC.error(id: id, .invalidRequest("initialize is not allowed inside a session"))
        default:
            return JSONRPC.error(id: id, .methodNotFound(method))
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
    var requestID: ID? {
        if case .request(let id, _, _) = self { return id }
        return nil
    }
}

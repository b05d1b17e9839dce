import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MCP
import NIOCore
import SessionClient
import SessionModel

/// The session revisions (2025-11-25, 2025-06-18, 2025-03-26): `initialize` starts a transport
/// session in the durable hosts, every later request names it, `DELETE` ends it, and `GET`
/// with `Last-Event-ID` resumes a stream.
extension MCPResponder {
    func initialize(id: ID, params: JSONValue?, principal: String) async -> Response {
        let object = params?.objectValue
        // The specification requires these; a client without them is not one to talk to.
        guard case .string(let requested)? = object?["protocolVersion"], let clientInfo = object?["clientInfo"]?.objectValue,
            case .string(let clientName)? = clientInfo["name"]
        else {
            return Self.json(
                bytes: JSONRPC.error(
                    id: id, .invalidParams("Invalid params: initialize needs protocolVersion, capabilities and clientInfo {name, version}")))
        }
        let version = WorkerDependencies.protocolVersions.contains(requested) ? requested : WorkerDependencies.protocolVersions[0]
        let session: TransportSession
        do {
            session = try await worker.sessions.create(
                principal: principal, protocolVersion: version, clientName: clientName, clientVersion: clientInfo["version"]?.stringValue ?? "")
        } catch {
            return Self.rpcError(.serviceUnavailable, id, .internalError("could not start a session: \(error.message)"))
        }
        var capabilities: JSONObject = ["resources": ["subscribe": false, "listChanged": false], "tools": ["listChanged": false]]
        if version == Self.taskRevision { capabilities["tasks"] = ["list": [:], "cancel": [:], "requests": ["tools": ["call": [:]]]] }
        let result: JSONValue = [
            "protocolVersion": .string(version),
            "capabilities": .object(capabilities),
            "serverInfo": ["name": "greptile-mcp", "version": .string(WorkerServer.version), "title": "Greptile code search"],
            "instructions": .string(Self.instructions),
        ]
        var response = Self.json(bytes: JSONRPC.result(id: id, json: result))
        response.headers[Self.sessionHeader] = session.id
        worker.logger.info("session started", metadata: ["principal": "\(principal)", "protocol": "\(version)", "client": "\(clientName)"])
        return response
    }

    /// A message of a session-revision client, in the transport session it names.
    func sessionMessage(_ message: IncomingMessage, sessionID: String, principal: String) async -> Response {
        if case .request(let id, "tools/call", let params) = message {
            if params?.objectValue?["task"] != nil { return await taskCall(id: id, params: params, sessionID: sessionID, principal: principal) }
            return await toolsCall(id: id, params: params, principal: principal, revision: .session(sessionID))
        }
        let session: TransportSession
        switch await loadSession(sessionID, principal: principal) {
        case .success(let found): session = found
        case .failure(let refusal): return Self.refusing(refusal, message.requestID)
        }
        switch message {
        case .notification("notifications/cancelled", let params):
            await cancel(params, in: session)
            return Response(status: .accepted)
        case .notification(let method, _):
            if method == "notifications/initialized" { try? await worker.sessions.markInitialized(session) }
            return Response(status: .accepted)
        case .response:
            return Response(status: .accepted)
        case .request(let id, let method, let params):
            return Self.json(bytes: await handle(method: method, id: id, params: params, session: session))
        }
    }

    /// The revision whose sessions have tasks (its experimental tasks).
    static let taskRevision = "2025-11-25"

    /// A `tools/call` that asks to run as a task (`params.task`): one under 2025-11-25, a plain
    /// call under the older revisions, which know no tasks.
    private func taskCall(id: ID, params: JSONValue?, sessionID: String, principal: String) async -> Response {
        let session: TransportSession
        switch await loadSession(sessionID, principal: principal) {
        case .success(let found): session = found
        case .failure(let refusal): return Self.refusing(refusal, id)
        }
        guard session.protocolVersion == Self.taskRevision else {
            return await toolsCall(id: id, params: params, principal: principal, revision: .session(sessionID))
        }
        switch await createTask(id: id, params: params, principal: principal, family: .experimental) {
        case .success(let task): return Self.json(bytes: JSONRPC.result(id: id, json: ["task": .object(task)]))
        case .failure(let error): return Self.json(bytes: JSONRPC.error(id: id, error))
        }
    }

    /// A request's transport session, or why it cannot be served.
    func loadSession(_ sessionID: String, principal: String) async -> Result<TransportSession, SessionRefusal> {
        do {
            guard let found = try await worker.sessions.load(sessionID, principal: principal) else { return .failure(.notFound) }
            return .success(found)
        } catch {
            return .failure(.storeFailed(error.message))
        }
    }

    /// A request inside a session other than `tools/call`: its JSON-RPC answer.
    private func handle(method: String, id: ID, params: JSONValue?, session: TransportSession) async -> Data {
        let principal = session.principal
        let tasks = session.protocolVersion == Self.taskRevision
        switch method {
        case "ping":
            return JSONRPC.result(id: id, json: [:])
        case "tools/list":
            return JSONRPC.result(id: id, json: ["tools": tasks ? ToolCatalog.listingWithTasks : ToolCatalog.listing])
        case "tasks/get" where tasks:
            return Self.answer(id, await getTask(params, principal: principal, family: .experimental))
        case "tasks/cancel" where tasks:
            return Self.answer(id, await cancelTask(params, principal: principal, family: .experimental))
        case "tasks/list" where tasks:
            return Self.answer(id, await listTasks(params, principal: principal))
        case "tasks/result" where tasks:
            return await taskResult(id: id, params, principal: principal)
        case "resources/list", "resources/read", "resources/templates/list":
            do {
                return JSONRPC.result(id: id, json: try await resources(method, principal: principal, params: params))
            } catch {
                return JSONRPC.error(id: id, Self.rpcError(error))
            }
        case "initialize":
            return JSONRPC.error(id: id, .invalidRequest("initialize is not allowed inside a session"))
        default:
            return JSONRPC.error(id: id, .methodNotFound(method))
        }
    }

    private static func answer(_ id: ID, _ outcome: Result<JSONObject, RPCError>) -> Data {
        switch outcome {
        case .success(let result): JSONRPC.result(id: id, json: .object(result))
        case .failure(let error): JSONRPC.error(id: id, error)
        }
    }

    /// `notifications/cancelled`: stops the request here, or marks it for the worker running it.
    private func cancel(_ params: JSONValue?, in session: TransportSession) async {
        let requestID: ID
        switch params?.objectValue?["requestId"] {
        case .string(let text)?: requestID = .string(text)
        case .int(let number)?: requestID = .number(Int(clamping: number))
        default: return
        }
        let key = InFlightCalls.key(session: session.id, request: requestID)
        if worker.calls.inFlight.cancel(key) {
            worker.logger.info("request cancelled by the client", metadata: ["principal": "\(session.principal)"])
            return
        }
        try? await worker.sessions.requestCancel(session, request: InFlightCalls.text(of: requestID))
    }

    /// The session a request without a body names in its header, or the answer that refuses it.
    private func namedSession(_ request: Request, principal: String) async -> Result<TransportSession, Refusal> {
        guard let sessionID = request.headers[Self.sessionHeader] else {
            return .failure(Refusal(response: Self.rpcError(.badRequest, nil, .invalidRequest("Bad Request: MCP-Session-Id header is required"))))
        }
        return await loadSession(sessionID, principal: principal).mapError { Refusal(response: Self.refusing($0, nil)) }
    }

    func delete(_ request: Request, principal: String) async -> Response {
        let session: TransportSession
        switch await namedSession(request, principal: principal) {
        case .success(let found): session = found
        case .failure(let refusal): return refusal.response
        }
        do {
            try await worker.sessions.end(session)
        } catch {
            return Self.refusing(.storeFailed(error.message), nil)
        }
        await worker.journal.clear(session: session.id)
        worker.logger.info("session ended", metadata: ["principal": "\(principal)"])
        return Response(status: .noContent)
    }

    /// `GET` with `Last-Event-ID`: the events of that stream after that one, from the
    /// session's journal in the durable hosts, whichever worker sent them; then, while the
    /// call still runs, the events it goes on sending, until its response.
    func resume(_ request: Request, principal: String) async -> Response {
        let session: TransportSession
        switch await namedSession(request, principal: principal) {
        case .success(let found): session = found
        case .failure(let refusal): return refusal.response
        }
        let lastEventID = request.headers[Self.lastEventHeader] ?? ""
        guard let (stream, after) = EventJournal.parse(lastEventID) else {
            return Self.rpcError(.badRequest, nil, .invalidRequest("Bad Request: Last-Event-ID '\(lastEventID.prefix(64))' is not an event id of this server"))
        }
        let first: EventJournal.Batch
        do {
            guard let found = try await worker.journal.events(session: session.id, stream: stream, after: after) else {
                return Self.rpcError(.notFound, nil, .invalidRequest("Not Found: no stream \(stream) in this session (it may have expired)"))
            }
            first = found
        } catch {
            return Self.refusing(.storeFailed(error.message), nil)
        }
        let follower = JournalFollower(journal: worker.journal, session: session.id, stream: stream, clock: worker.clock)
        var response = Response(
            status: .ok,
            body: ResponseBody { writer in
                try await follower.follow(from: first, after: after) { text in try await writer.write(ByteBuffer(string: text)) }
                try await writer.finish(nil)
            })
        response.headers[.contentType] = "text/event-stream"
        response.headers[.cacheControl] = "no-cache"
        return response
    }
}

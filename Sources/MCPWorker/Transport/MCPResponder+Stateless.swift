import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import MCP
import NIOCore
import SessionModel

/// Revision 2026-07-28: every request stands alone, validated by the revision's ladder
/// (`ModernTransport`) and answered without a session.
extension MCPResponder {
    func stateless(_ message: IncomingMessage, request: Request, principal: String, channel: any Channel) async -> Response {
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
            return Self.json(bytes: JSONRPC.result(id: id, json: ModernTransport.discoverResult(instructions: Self.instructions)))
        case "tools/list":
            return Self.json(bytes: JSONRPC.result(id: id, json: ModernTransport.toolsList))
        case "resources/list", "resources/read", "resources/templates/list":
            do {
                let result = try await resources(method, principal: principal, params: params)
                // Each principal's conversations are its own, and change with every turn.
                let cache: (Duration, String)? = method == "resources/read" ? nil : (.zero, method == "resources/list" ? "private" : "public")
                return Self.json(bytes: JSONRPC.result(id: id, json: ModernTransport.complete(result, cacheFor: cache?.0, scope: cache?.1 ?? "public")))
            } catch {
                let failure = Self.rpcError(error)
                return Self.rpcError(HTTPResponse.Status(code: ModernTransport.status(of: failure.code)), id, failure)
            }
        case "tools/call" where Self.optsIntoTasks(params) && Self.runsAsTask(params):
            return Self.modern(id, await createTask(id: id, params: params, principal: principal, family: .tasksExtension), resultType: "task")
        case "tasks/get", "tasks/update", "tasks/cancel":
            guard Self.optsIntoTasks(params) else { return Self.rpcError(.badRequest, id, Self.tasksCapabilityMissing) }
            switch method {
            case "tasks/get": return Self.modern(id, await getTask(params, principal: principal, family: .tasksExtension))
            case "tasks/cancel": return Self.modern(id, await cancelTask(params, principal: principal, family: .tasksExtension))
            default:
                // No task of this server waits for input: a known task's update is acknowledged and changes nothing.
                return Self.modern(id, await lookUpTask(params, principal: principal).map { _ in [:] })
            }
        case "tools/call":
            // In this revision the connection is the call: a client that closes it cancels it.
            let clientGone = await ConnectionGuard.closed(on: channel)
            return await toolsCall(id: id, params: params, principal: principal, revision: .stateless(clientGone: clientGone))
        default:
            return Self.rpcError(.notFound, id, .methodNotFound(method))
        }
    }

    /// Whether a `tools/call` names a tool that runs as a task.
    static func runsAsTask(_ params: JSONValue?) -> Bool {
        params?.objectValue?["name"]?.stringValue.map(TaskRecord.tools.contains) ?? false
    }

    /// A result of this revision (`resultType`), or its error with the revision's status.
    static func modern(_ id: ID, _ outcome: Result<JSONObject, RPCError>, resultType: String = "complete") -> Response {
        switch outcome {
        case .success(var result):
            result["resultType"] = .string(resultType)
            return json(bytes: JSONRPC.result(id: id, json: .object(result)))
        case .failure(let error):
            return rpcError(HTTPResponse.Status(code: ModernTransport.status(of: error.code)), id, error)
        }
    }
}

import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import MCP
import SessionModel

/// The revision a `tools/call` came under, as far as running and answering it differs.
enum CallRevision: Sendable {
    /// A session revision: the transport session the request names, checked beside the call.
    case session(String)
    /// 2026-07-28: the connection is the call; `clientGone` opens when its client leaves.
    case stateless(clientGone: Latch?)
}

extension MCPResponder {
    /// The one path of every `tools/call`, whatever its revision and whether it streams: the
    /// request read, the call run by the supervisor (so every way of stopping it works), and
    /// its answer written as its revision wants.
    func toolsCall(id: ID, params: JSONValue?, principal: String, revision: CallRevision) async -> Response {
        let call: ToolCall
        do {
            call = try ToolCall(id: id, params: params)
        } catch {
            // A session's refusal comes first: a request for an unknown session is 404 whatever it holds.
            if case .session(let sessionID) = revision, case .failure(let refusal) = await loadSession(sessionID, principal: principal) {
                return Self.refusing(refusal, id)
            }
            return Self.answer(.failure(error), id: id, revision: revision)
        }
        guard call.wantsStream else { return await plainCall(call, principal: principal, revision: revision) }
        switch revision {
        case .session(let sessionID):
            // A stream's status goes out before its first event: its session is checked first.
            switch await loadSession(sessionID, principal: principal) {
            case .success(let session): return await streamedCall(call, principal: principal, session: session, clientGone: nil)
            case .failure(let refusal): return Self.refusing(refusal, id)
            }
        case .stateless(let clientGone):
            return await streamedCall(call, principal: principal, session: nil, clientGone: clientGone)
        }
    }

    /// A call answered with one JSON response. Under a session revision the session's check
    /// rides along with the call instead of coming before it: the session is loaded while the
    /// call reads what it needs (a conversation's history), and the call waits for the check
    /// before it does anything (asks Greptile, writes). An unknown session still gets 404 with
    /// nothing done; a known one saves a host round trip of latency.
    private func plainCall(_ call: ToolCall, principal: String, revision: CallRevision) async -> Response {
        var stoppers = CallSupervisor.Stoppers()
        let check: (gate: SessionCheck, sessionID: String)?
        switch revision {
        case .session(let sessionID):
            stoppers.request = (sessionID, call.id)
            check = (SessionCheck(), sessionID)
        case .stateless(let clientGone):
            stoppers.latches = clientGone.map { [$0] } ?? []
            check = nil
        }
        let tools = worker.tools
        let supervisor = worker.calls
        return await withTaskGroup(of: Void.self) { group in
            if let check {
                group.addTask { check.gate.settle(await self.loadSession(check.sessionID, principal: principal)) }
            }
            let outcome: Result<ToolResult, any Error>
            do {
                outcome = .success(
                    try await supervisor.run(stoppers) {
                        try await tools.call(call.name, arguments: call.arguments, principal: principal) { try await check?.gate.session() }
                    })
            } catch {
                outcome = .failure(error)
            }
            // A call refused before it looked at its session (bad arguments) is still answered
            // for the session first.
            var version: String?
            if let check {
                switch await check.gate.outcome() {
                case .failure(let refusal): return Self.refusing(refusal, call.id)
                case .success(let session): version = session.protocolVersion
                }
            }
            return Self.answer(outcome, id: call.id, revision: revision, links: Self.hasResourceLinks(version))
        }
    }

    /// Whether results carry `resource_link` items under a session of `version` (nil: the
    /// stateless revision): every revision since 2025-06-18 has them.
    static func hasResourceLinks(_ version: String?) -> Bool {
        version != "2025-03-26"
    }

    /// A call's outcome as its revision answers it: the result (with `resultType` under
    /// 2026-07-28), a protocol error, or -32800 for a call that was stopped.
    static func answer(_ outcome: Result<ToolResult, any Error>, id: ID, revision: CallRevision, links: Bool = true) -> Response {
        switch (outcome, revision) {
        case (.success(let result), .session):
            return json(bytes: JSONRPC.toolResult(id: id, result, links: links))
        case (.success(let result), .stateless):
            return json(bytes: JSONRPC.toolResult(id: id, result, extra: ["resultType": "complete"]))
        case (.failure(let error as RPCError), .session):
            return json(bytes: JSONRPC.error(id: id, error))
        case (.failure(let error as RPCError), .stateless):
            return rpcError(HTTPResponse.Status(code: ModernTransport.status(of: error.code)), id, error)
        case (.failure, .session):
            return json(bytes: JSONRPC.error(id: id, .requestCancelled))
        case (.failure, .stateless):
            // Nobody is left to read this answer.
            return rpcError(.internalServerError, id, .requestCancelled)
        }
    }
}

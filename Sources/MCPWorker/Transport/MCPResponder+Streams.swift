import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import MCP
import NIOCore
import SessionModel
import Synchronization

extension MCPResponder {
    /// Whether a `tools/call` answers on an SSE stream: the client asked for progress (a
    /// `progressToken`), or for a streamed answer (`stream: true`).
    static func wantsStream(_ params: Value?) -> Bool {
        let object = params?.objectValue
        if object?["_meta"]?.objectValue?["progressToken"] != nil { return true }
        return object?["arguments"]?.objectValue?["stream"] == .bool(true)
    }

    /// Answers a `tools/call` on an SSE stream: progress while it runs, then the response.
    ///
    /// The call runs in the worker's `BackgroundCalls`, not the connection's task. Under the session revisions a
    /// client that goes away does not stop it (its answer is still stored, and the stream
    /// can be resumed) but `notifications/cancelled` does; under the stateless revision
    /// closing the stream stops it. Either way the upstream transfer is aborted.
    ///
    /// `session` is nil under the stateless revision.
    func streamedCall(
        id: ID, call: CallTool.Parameters, params: Value?, principal: String, session: TransportSession?,
        clientGone: Latch?, encode: @escaping @Sendable (CallTool.Result) -> Data
    ) async -> Response {
        let timing = worker.streamTiming
        let events = EventStream(journal: session.map { (worker.journal, $0) }, now: timing.now)
        let token = params?.objectValue?["_meta"]?.objectValue?["progressToken"]
        let reporter = token.map { StreamProgress(token: $0, events: events) }
        let tools = worker.tools
        var stoppers = CallSupervisor.Stoppers()
        if let session {
            stoppers.request = (session.id, id)
        } else {
            stoppers.clientGone = [events.readerGone] + (clientGone.map { [$0] } ?? [])
        }
        let supervisor = worker.calls
        await events.prime()
        let started = supervisor.background.start { [stoppers] in
            do {
                let result = try await supervisor.run(stoppers, companions: [{ await timing.heartbeat(events, reporter) }]) {
                    try await tools.call(call.name, arguments: call.arguments, principal: principal, progress: reporter)
                }
                await events.send(encode(result))
            } catch let error as RPCError {
                await events.send(JSONRPC.error(id: id, error))
            } catch {
                // Stopped: the client closed the stream (stateless revision) or cancelled the request.
            }
            await events.finish()
        }
        if !started {
            await events.send(JSONRPC.error(id: id, .internalError("this worker is shutting down; send the call again")))
            await events.finish()
        }
        var response = Response(
            status: .ok,
            body: ResponseBody { writer in
                await withTaskCancellationHandler {
                    while let buffer = await events.next() {
                        do {
                            try await writer.write(buffer)
                        } catch {
                            break
                        }
                    }
                } onCancel: {
                    events.readerLeft()
                }
                events.readerLeft()
                try? await writer.finish(nil)
            })
        response.headers[.contentType] = "text/event-stream"
        response.headers[.cacheControl] = "no-cache"
        return response
    }
}

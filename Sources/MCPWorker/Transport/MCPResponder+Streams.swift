import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import MCP
import NIOCore
import SessionModel
import Synchronization

extension MCPResponder {
    /// Answers a `tools/call` on an SSE stream: progress while it runs, then the response.
    ///
    /// The call runs in the worker's `BackgroundCalls`, not the connection's task. Under the
    /// session revisions a client that goes away does not stop it (its answer is still stored,
    /// and the stream can be resumed) but `notifications/cancelled` does; under the stateless
    /// revision (`session` nil) closing the stream stops it. Either way the upstream transfer
    /// is aborted.
    func streamedCall(_ call: ToolCall, principal: String, session: TransportSession?, clientGone: Latch?) async -> Response {
        let timing = worker.streamTiming
        let events = EventStream(journal: session.map { (worker.journal, $0) }, clock: worker.clock)
        let reporter = call.progressToken.map { StreamProgress(token: $0, events: events) }
        let tools = worker.tools
        var stoppers = CallSupervisor.Stoppers()
        if let session {
            stoppers.request = (session.id, call.id)
        } else {
            stoppers.latches = [events.readerGone] + (clientGone.map { [$0] } ?? [])
        }
        let supervisor = worker.calls
        let extra = session == nil ? ["resultType": "complete"] : [:]
        let links = Self.hasResourceLinks(session?.protocolVersion)
        await events.prime()
        let started = supervisor.background.start { [stoppers] in
            do {
                let result = try await supervisor.run(stoppers, companions: [{ await timing.heartbeat(events, reporter) }]) {
                    try await tools.call(call.name, arguments: call.arguments, principal: principal, progress: reporter)
                }
                await events.send(JSONRPC.toolResult(id: call.id, result, extra: extra, links: links))
            } catch let error as RPCError {
                await events.send(JSONRPC.error(id: call.id, error))
            } catch {
                // Stopped: the client closed the stream (stateless revision) or cancelled the request.
            }
            await events.finish()
        }
        if !started {
            await events.send(JSONRPC.error(id: call.id, .internalError("this worker is shutting down; send the call again")))
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

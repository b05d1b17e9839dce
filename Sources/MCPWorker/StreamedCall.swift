import Foundation
import HTTPTypes
import Hummingbird
import MCP
import NIOCore
import SessionModel
import Synchronization

/// The events of one SSE response: progress notifications while a tool call runs, then its
/// JSON-RPC response, then the end of the stream.
///
/// Under the session revisions every event has an id unique within the session
/// (`<stream>-<n>`, the stream id being random) and the stream opens with an event that
/// carries only an id, so a client can resume from the start. The stateless revision has
/// no resumption and gets no ids.
final class EventStream: Sendable {
    let streamID: String?
    let events: AsyncStream<ByteBuffer>
    private let continuation: AsyncStream<ByteBuffer>.Continuation
    private let sequence = Mutex(0)
    private let lastSent = Mutex(ContinuousClock.now)
    /// Where events are kept for resumption (session revisions), with the session's id.
    private let journal: (EventJournal, session: String)?

    init(journal: (EventJournal, session: String)?) {
        self.journal = journal
        streamID = journal == nil ? nil : String(TransportSessions.newID().prefix(16))
        (events, continuation) = AsyncStream<ByteBuffer>.makeStream(bufferingPolicy: .unbounded)
    }

    /// Sends one JSON-RPC message as an event, kept first when the stream is resumable.
    func send(_ message: Data) async {
        let data = String(decoding: message, as: UTF8.self)
        guard let id = nextID() else {
            yield("data: \(data)\n\n")
            return
        }
        if let (journal, session) = journal { await journal.append(session: session, eventID: id, data: data) }
        yield("id: \(id)\ndata: \(data)\n\n")
    }

    /// The first event of a resumable stream: an id and no data.
    func prime() async {
        guard let id = nextID() else { return }
        if let (journal, session) = journal {
            await journal.startStream(session: session)
            await journal.append(session: session, eventID: id, data: "")
        }
        yield("id: \(id)\nretry: 1000\ndata: \n\n")
    }

    /// A comment line: keeps proxies from timing out, and finds out whether the client is gone.
    func keepAlive() {
        continuation.yield(ByteBuffer(string: ": keepalive\n\n"))
    }

    /// Time since the last event (keep-alive comments do not count).
    var idleFor: Duration { ContinuousClock.now - lastSent.withLock { $0 } }

    /// Ends the stream (and records its end for clients that resume it).
    func finish() async {
        if let (journal, session) = journal, let streamID { await journal.end(session: session, stream: streamID) }
        continuation.finish()
    }

    private func nextID() -> String? {
        guard let streamID else { return nil }
        let number = sequence.withLock { value -> Int in
            defer { value += 1 }
            return value
        }
        return "\(streamID)-\(number)"
    }

    private func yield(_ text: String) {
        lastSent.withLock { $0 = .now }
        continuation.yield(ByteBuffer(string: text))
    }
}

/// Progress of a tool call as `notifications/progress` events, for a client that gave a token.
struct StreamProgress: ProgressReporter {
    let token: Value
    let events: EventStream

    func report(_ textSoFar: String) async {
        await send(progress: Double(textSoFar.count), message: textSoFar)
    }

    func send(progress: Double, message: String) async {
        await events.send(JSONRPC.notification(method: "notifications/progress", params: Parameters(progressToken: token, progress: progress, message: message)))
    }

    struct Parameters: Encodable {
        let progressToken: Value
        let progress: Double
        let message: String
    }
}

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
    /// The call runs in its own task, not the connection's. Under the session revisions a
    /// client that goes away does not cancel it (its answer is still stored, and the stream
    /// can be resumed); under the stateless revision closing the stream cancels it, which
    /// aborts the upstream transfer.
    ///
    /// `session` is nil under the stateless revision. Under the session revisions the call
    /// can be cancelled with `notifications/cancelled`, on this worker or through a mark in
    /// the session that this call looks for four times a second.
    func streamedCall(
        id: ID, call: CallTool.Parameters, params: Value?, principal: String, session: TransportSession?,
        encode: @escaping @Sendable (CallTool.Result) -> Data
    ) async -> Response {
        let stateless = session == nil
        let events = EventStream(journal: session.map { (worker.journal, $0.id) })
        let token = params?.objectValue?["_meta"]?.objectValue?["progressToken"]
        let reporter = token.map { StreamProgress(token: $0, events: events) }
        let tools = worker.tools
        let inFlight = worker.inFlight
        let sessions = worker.sessions
        let key = session.map { InFlightCalls.key(session: $0.id, request: id) }
        await events.prime()
        let work = Task {
            let started = ContinuousClock.now
            // Every second: a keep-alive comment, and for a long call a progress heartbeat.
            let ticker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    if Task.isCancelled { break }
                    if let reporter, events.idleFor >= .seconds(2) {
                        let waited = Int((ContinuousClock.now - started).components.seconds)
                        await reporter.send(progress: 0, message: "waiting for Greptile (\(waited) s)")
                    } else {
                        events.keepAlive()
                    }
                }
            }
            do {
                let result = try await tools.call(call.name, arguments: call.arguments, principal: principal, progress: reporter)
                await events.send(encode(result))
            } catch let error as RPCError {
                await events.send(JSONRPC.error(id: id, error))
            } catch {
                // Cancelled: the client closed the stream (stateless revision) or cancelled the request.
            }
            ticker.cancel()
            if let key { inFlight.remove(key) }
            await events.finish()
        }
        if let key, let session {
            inFlight.register(key, work)
            // Four times a second, while the call runs: was it cancelled through another worker?
            let request = InFlightCalls.text(of: id)
            let watcher = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(250))
                    if !Task.isCancelled, await sessions.isCancelRequested(sessionID: session.id, request: request) {
                        work.cancel()
                        return
                    }
                }
            }
            Task {
                await work.value
                watcher.cancel()
                // Also when the call ended before it was registered.
                inFlight.remove(key)
            }
        }
        var response = Response(
            status: .ok,
            body: ResponseBody { writer in
                await withTaskCancellationHandler {
                    for await buffer in events.events {
                        do {
                            try await writer.write(buffer)
                        } catch {
                            break
                        }
                    }
                } onCancel: {
                    if stateless { work.cancel() }
                }
                if stateless && !work.isCancelled {
                    // The stream ended before the call did (the client went away): cancel it.
                    work.cancel()
                }
                try? await writer.finish(nil)
            })
        response.headers[.contentType] = "text/event-stream"
        response.headers[.cacheControl] = "no-cache"
        return response
    }
}

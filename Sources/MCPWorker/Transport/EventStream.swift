import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import MCP
import NIOCore
import ServerRuntime
import SessionModel
import Synchronization

/// The events of one SSE response: progress notifications while a tool call runs, then its
/// JSON-RPC response, then the end of the stream.
///
/// Under the session revisions every event has an id unique within the session
/// (`<stream>-<n>`, the stream id being random) and the stream opens with an event that
/// carries only an id, so a client can resume from the start. The stateless revision has
/// no resumption and gets no ids.
///
/// The buffer between the call and the HTTP response is bounded: a producer waits while
/// `capacity` events are unread, so a slow reader slows the call (down to Greptile's stream,
/// which libcurl pauses) instead of growing the worker's memory. Once the reader has gone
/// (`readerLeft`), events are no longer buffered; under the session revisions they are still
/// kept in the journal, for the client to resume.
final class EventStream: Sendable {
    let streamID: String?
    /// Where events are kept for resumption (session revisions), with the session.
    private let journal: (EventJournal, session: TransportSession)?
    private let capacity: Int
    private let clock: ServerClock
    private let sequence = Mutex(0)
    private let state: Mutex<State>
    /// Opened when the reader has gone: under 2026-07-28, a reason to stop the call.
    let readerGone = Latch()

    private struct State {
        var buffer: [ByteBuffer] = []
        var finished = false
        var readerGone = false
        var lastSent: ServerClock.Instant
        var reader: CheckedContinuation<ByteBuffer?, Never>?
        var writers: [CheckedContinuation<Void, Never>] = []
    }

    init(journal: (EventJournal, session: TransportSession)?, capacity: Int = 64, clock: ServerClock) {
        self.journal = journal
        self.capacity = capacity
        self.clock = clock
        state = Mutex(State(lastSent: clock.now))
        streamID = journal == nil ? nil : String(TransportSessions.newID().prefix(16))
    }

    /// Sends one JSON-RPC message as an event, kept first when the stream is resumable.
    func send(_ message: Data) async {
        let data = String(decoding: message, as: UTF8.self)
        guard let id = nextID() else {
            await enqueue("data: \(data)\n\n")
            return
        }
        if let (journal, session) = journal { await journal.append(session: session, eventID: id, data: data) }
        await enqueue("id: \(id)\ndata: \(data)\n\n")
    }

    /// The first event of a resumable stream: an id and no data.
    func prime() async {
        guard let id = nextID() else { return }
        if let (journal, session) = journal {
            await journal.startStream(session: session)
            await journal.append(session: session, eventID: id, data: "")
        }
        await enqueue("id: \(id)\nretry: 1000\ndata: \n\n")
    }

    /// A comment line: keeps proxies from timing out, and finds out whether the client is
    /// gone. Skipped when events are waiting anyway.
    func keepAlive() {
        let reader = state.withLock { state -> CheckedContinuation<ByteBuffer?, Never>? in
            guard !state.readerGone, !state.finished, state.buffer.isEmpty else { return nil }
            if let reader = state.reader {
                state.reader = nil
                return reader
            }
            state.buffer.append(ByteBuffer(string: ": keepalive\n\n"))
            return nil
        }
        reader?.resume(returning: ByteBuffer(string: ": keepalive\n\n"))
    }

    /// Time since the last event (keep-alive comments do not count).
    var idleFor: Duration { clock.elapsed(since: state.withLock { $0.lastSent }) }

    /// Events buffered for the reader, and producers waiting for room (what tests observe).
    var buffered: Int { state.withLock { $0.buffer.count } }
    var waitingProducers: Int { state.withLock { $0.writers.count } }

    /// Ends the stream (and records its end for clients that resume it).
    func finish() async {
        if let (journal, session) = journal, let streamID { await journal.end(session: session, stream: streamID) }
        let reader = state.withLock { state -> CheckedContinuation<ByteBuffer?, Never>? in
            state.finished = true
            defer { state.reader = nil }
            return state.buffer.isEmpty ? state.reader : nil
        }
        reader?.resume(returning: nil)
    }

    /// The next event for the HTTP response; nil once the stream has ended.
    func next() async -> ByteBuffer? {
        await withCheckedContinuation { (continuation: CheckedContinuation<ByteBuffer?, Never>) in
            let (event, writer) = state.withLock { state -> (ByteBuffer??, CheckedContinuation<Void, Never>?) in
                if !state.buffer.isEmpty {
                    let event = state.buffer.removeFirst()
                    let writer = state.writers.isEmpty ? nil : state.writers.removeFirst()
                    return (.some(event), writer)
                }
                if state.finished || state.readerGone { return (.some(nil), nil) }
                state.reader = continuation
                return (nil, nil)
            }
            writer?.resume()
            if let event { continuation.resume(returning: event) }
        }
    }

    /// The HTTP response has stopped reading (the client went away, or the stream ended).
    func readerLeft() {
        let (writers, reader) = state.withLock { state in
            state.readerGone = true
            state.buffer = []
            defer {
                state.writers = []
                state.reader = nil
            }
            return (state.writers, state.reader)
        }
        for writer in writers { writer.resume() }
        reader?.resume(returning: nil)
        readerGone.open()
    }

    private func enqueue(_ text: String) async {
        let buffer = ByteBuffer(string: text)
        while true {
            enum Step { case delivered(CheckedContinuation<ByteBuffer?, Never>?), wait }
            let step: Step = state.withLock { state in
                if state.readerGone { return .delivered(nil) }
                if let reader = state.reader {
                    state.reader = nil
                    state.lastSent = clock.now
                    return .delivered(reader)
                }
                guard state.buffer.count < capacity else { return .wait }
                state.lastSent = clock.now
                state.buffer.append(buffer)
                return .delivered(nil)
            }
            switch step {
            case .delivered(let reader):
                reader?.resume(returning: buffer)
                return
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let proceed = state.withLock { state -> Bool in
                        if state.readerGone || state.buffer.count < capacity { return true }
                        state.writers.append(continuation)
                        return false
                    }
                    if proceed { continuation.resume() }
                }
            }
        }
    }

    private func nextID() -> String? {
        guard let streamID else { return nil }
        let number = sequence.withLock { value -> Int in
            defer { value += 1 }
            return value
        }
        return "\(streamID)-\(number)"
    }
}

/// Progress of a tool call as `notifications/progress` events, for a client that gave a token.
struct StreamProgress: ProgressReporter {
    let token: JSONValue
    let events: EventStream

    func report(_ textSoFar: String) async {
        await send(progress: Double(textSoFar.count), message: textSoFar)
    }

    func send(progress: Double, message: String) async {
        await events.send(
            JSONRPC.notification(
                method: "notifications/progress", params: ["progressToken": token, "progress": .double(progress), "message": .string(message)]))
    }
}

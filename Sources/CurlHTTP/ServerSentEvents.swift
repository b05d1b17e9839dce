import Foundation

/// One Server-Sent Event (the `text/event-stream` format of the HTML standard).
public struct ServerSentEvent: Sendable, Hashable {
    public var id: String?
    public var event: String?
    public var data: String
    public var retry: Int?

    public init(id: String? = nil, event: String? = nil, data: String, retry: Int? = nil) {
        self.id = id
        self.event = event
        self.data = data
        self.retry = retry
    }
}

/// Splits a byte stream into events, whatever the chunk boundaries: a pure state machine.
///
/// `id` of an event is the id field it carried, if any.
public struct ServerSentEventParser: Sendable {
    private var buffer: [UInt8] = []
    private var event = ServerSentEvent(data: "")
    private var dataLines: [String] = []
    private var hasFields = false
    /// A line ended with CR at the end of a chunk: an LF starting the next one belongs to it.
    private var skipLineFeed = false

    public init() {}

    /// Feeds bytes; returns the events they complete.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [ServerSentEvent] {
        buffer.append(contentsOf: bytes)
        var events: [ServerSentEvent] = []
        var start = 0
        var index = 0
        if skipLineFeed, let first = buffer.first {
            skipLineFeed = false
            if first == UInt8(ascii: "\n") {
                start = 1
                index = 1
            }
        }
        while index < buffer.count {
            let byte = buffer[index]
            guard byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") else {
                index += 1
                continue
            }
            let line = String(decoding: buffer[start..<index], as: UTF8.self)
            index += 1
            if byte == UInt8(ascii: "\r") {
                if index < buffer.count {
                    if buffer[index] == UInt8(ascii: "\n") { index += 1 }
                } else {
                    skipLineFeed = true
                }
            }
            start = index
            if let completed = process(line) { events.append(completed) }
        }
        buffer.removeFirst(start)
        return events
    }

    /// Ends the stream: an event without its closing blank line is dropped, as the standard says.
    public mutating func finish() {
        buffer.removeAll()
        skipLineFeed = false
        reset()
    }

    private mutating func process(_ line: String) -> ServerSentEvent? {
        if line.isEmpty {
            defer { reset() }
            guard hasFields else { return nil }
            var completed = event
            completed.data = dataLines.joined(separator: "\n")
            return completed
        }
        if line.hasPrefix(":") { return nil }
        let field: Substring
        var value: Substring
        if let colon = line.firstIndex(of: ":") {
            field = line[..<colon]
            value = line[line.index(after: colon)...]
            if value.hasPrefix(" ") { value = value.dropFirst() }
        } else {
            field = Substring(line)
            value = ""
        }
        switch field {
        case "data":
            dataLines.append(String(value))
            hasFields = true
        case "event":
            event.event = String(value)
            hasFields = true
        case "id":
            if !value.contains("\0") { event.id = String(value) }
            hasFields = true
        case "retry":
            if let retry = Int(value) { event.retry = retry }
        default:
            break
        }
        return nil
    }

    private mutating func reset() {
        event = ServerSentEvent(data: "")
        dataLines.removeAll()
        hasFields = false
    }
}

extension HTTPBodyStream {
    /// The body parsed as Server-Sent Events, as it is read.
    public var serverSentEvents: ServerSentEvents { ServerSentEvents(body: self) }
}

/// A response body read as Server-Sent Events: each chunk parsed as the reader asks for the
/// next event, with no task between the transfer and the reader. Cancelling the reader, or
/// leaving the events (a `break`), aborts the transfer, even while the body is still held.
public struct ServerSentEvents: AsyncSequence, Sendable {
    public typealias Element = ServerSentEvent
    let body: HTTPBodyStream

    public struct AsyncIterator: AsyncIteratorProtocol {
        var chunks: HTTPBodyStream.AsyncIterator
        let abandon: AbandonedTransfer
        var parser = ServerSentEventParser()
        var ready: [ServerSentEvent] = []
        var ended = false

        public mutating func next() async throws -> ServerSentEvent? {
            while ready.isEmpty {
                if ended { return nil }
                if let chunk = try await chunks.next() {
                    ready = parser.feed(chunk)
                } else {
                    parser.finish()
                    ended = true
                }
            }
            return ready.removeFirst()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(chunks: body.makeAsyncIterator(), abandon: AbandonedTransfer(reader: body.reader))
    }
}

/// Aborts a transfer once the iterator reading it is gone (a finished one is left alone).
public final class AbandonedTransfer: Sendable {
    let reader: BodyReader

    init(reader: BodyReader) {
        self.reader = reader
    }

    deinit {
        reader.transfer.cancel(via: reader.loop)
    }
}

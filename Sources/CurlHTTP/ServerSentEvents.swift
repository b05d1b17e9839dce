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
    /// The body parsed as Server-Sent Events.
    public var serverSentEvents: AsyncThrowingStream<ServerSentEvent, any Error> {
        let body = self
        return AsyncThrowingStream { continuation in
            let task = Task {
                var parser = ServerSentEventParser()
                do {
                    for try await chunk in body {
                        for event in parser.feed(chunk) { continuation.yield(event) }
                    }
                    parser.finish()
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

import Foundation
import Synchronization

/// The buffer between the loop thread, which offers body chunks, and the task reading them.
///
/// When more than `highWater` bytes wait unread, `offer` refuses and the loop pauses the
/// transfer; the reader asks for it to be resumed once it has drained the buffer.
final class BodyChannel: Sendable {
    private struct State {
        var chunks: [Data] = []
        var head = 0
        var bytes = 0
        var end: Result<Void, any Error>?
        var waiter: CheckedContinuation<Data?, any Error>?
        var refused = false
    }

    private let state = Mutex(State())
    let highWater: Int

    init(highWater: Int) {
        self.highWater = highWater
    }

    /// Called by the loop thread; false means "pause, and offer this again later".
    func offer(_ data: Data) -> Bool {
        enum Outcome {
            case handed(CheckedContinuation<Data?, any Error>)
            case buffered
            case refused
        }
        let outcome: Outcome = state.withLock { state in
            if let waiter = state.waiter {
                state.waiter = nil
                return .handed(waiter)
            }
            if state.bytes >= highWater {
                state.refused = true
                return .refused
            }
            state.chunks.append(data)
            state.bytes += data.count
            return .buffered
        }
        switch outcome {
        case .handed(let waiter):
            waiter.resume(returning: data)
            return true
        case .buffered:
            return true
        case .refused:
            return false
        }
    }

    /// Called by the loop thread when the transfer has ended, with the error if it failed.
    func finish(_ error: (any Error)?) {
        let waiter: CheckedContinuation<Data?, any Error>? = state.withLock { state in
            guard state.end == nil else { return nil }
            state.end = error.map { .failure($0) } ?? .success(())
            defer { state.waiter = nil }
            return state.waiter
        }
        if let error { waiter?.resume(throwing: error) } else { waiter?.resume(returning: nil) }
    }

    enum Take {
        case chunk(Data, resumeTransfer: Bool)
        case end(Result<Void, any Error>)
        case wait
    }

    /// The next chunk if one is buffered; whether the paused transfer should now go on.
    func take() -> Take {
        state.withLock { state in
            if state.head < state.chunks.count {
                let data = state.chunks[state.head]
                state.chunks[state.head] = Data()
                state.head += 1
                state.bytes -= data.count
                if state.head == state.chunks.count {
                    state.chunks.removeAll(keepingCapacity: true)
                    state.head = 0
                }
                let resume = state.refused && state.bytes <= highWater / 4
                if resume { state.refused = false }
                return .chunk(data, resumeTransfer: resume)
            }
            if let end = state.end { return .end(end) }
            return .wait
        }
    }

    /// Waits for the next chunk: nil at the end of the body, empty when a chunk raced in (take again).
    func wait() async throws -> Data? {
        try await withCheckedThrowingContinuation { continuation in
            let immediate: Result<Data?, any Error>? = state.withLock { state in
                if state.head < state.chunks.count { return .success(Data()) }
                if let end = state.end { return end.map { nil } }
                state.waiter = continuation
                return nil
            }
            if let immediate { continuation.resume(with: immediate) }
        }
    }

    /// Clears a refusal, returning whether there was one (the paused transfer may go on).
    func clearRefusal() -> Bool {
        state.withLock { state in
            defer { state.refused = false }
            return state.refused
        }
    }
}

/// Owns a streamed body on behalf of its readers: when the last reference goes, the transfer is aborted.
final class BodyReader: Sendable {
    let channel: BodyChannel
    let transfer: Transfer
    let loop: CurlMultiLoop

    init(channel: BodyChannel, transfer: Transfer, loop: CurlMultiLoop) {
        self.channel = channel
        self.transfer = transfer
        self.loop = loop
    }

    func next() async throws -> Data? {
        while true {
            switch channel.take() {
            case .chunk(let data, let resume):
                if resume { loop.submit(.resume(transfer)) }
                return data
            case .end(let result):
                try result.get()
                return nil
            case .wait:
                // Nothing buffered: make sure a paused transfer goes on before waiting.
                if channel.clearRefusal() { loop.submit(.resume(transfer)) }
                let data = try await withTaskCancellationHandler {
                    try await channel.wait()
                } onCancel: {
                    transfer.cancel(via: loop)
                }
                guard let data else { return nil }
                if !data.isEmpty { return data }
            }
        }
    }

    deinit {
        transfer.cancel(via: loop)
    }
}

/// A response body as it arrives, chunk by chunk.
///
/// Reading it from a task that is then cancelled, or dropping it unread, aborts the transfer.
public struct HTTPBodyStream: AsyncSequence, Sendable {
    public typealias Element = Data
    let reader: BodyReader

    public struct AsyncIterator: AsyncIteratorProtocol {
        let reader: BodyReader
        public mutating func next() async throws -> Data? {
            try await reader.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(reader: reader)
    }

    /// Reads the rest of the body, refusing more than `limit` bytes.
    public func collect(upTo limit: Int) async throws -> Data {
        var result = Data()
        for try await chunk in self {
            guard result.count + chunk.count <= limit else {
                throw CurlError.transport("response body exceeds \(limit) bytes", curlCode: 0)
            }
            result.append(chunk)
        }
        return result
    }
}

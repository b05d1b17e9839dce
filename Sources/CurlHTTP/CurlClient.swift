import CCurl
import Foundation

/// An async HTTP client on one libcurl multi handle.
///
/// Every transfer runs on the client's own thread (`CurlMultiLoop`), never on Swift's
/// cooperative pool: callers suspend on a continuation that the loop resumes. Connections are
/// kept alive and reused across requests to the same origin.
///
/// ```swift
/// let client = CurlClient()
/// let response = try await client.execute(HTTPRequest(url: "http://127.0.0.1:7400/health"))
/// print(response.status, response.text)
/// ```
public final class CurlClient: Sendable {
    public struct Configuration: Sendable {
        /// Connections kept open for reuse, across all origins.
        public var maxIdleConnections: Int
        /// Bytes of a streamed body buffered before the transfer is paused until they are read.
        public var streamHighWater: Int
        /// `User-Agent` sent unless a request sets its own.
        public var userAgent: String

        public init(maxIdleConnections: Int = 64, streamHighWater: Int = 1 << 20, userAgent: String = "greptile-mcp") {
            self.maxIdleConnections = maxIdleConnections
            self.streamHighWater = streamHighWater
            self.userAgent = userAgent
        }
    }

    let loop: CurlMultiLoop
    public let configuration: Configuration

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        loop = CurlMultiLoop(maxConnections: configuration.maxIdleConnections)
    }

    /// Sends a request and collects the whole response.
    ///
    /// Throws `CurlError` when no response arrived, `CancellationError` when the task was
    /// cancelled (the transfer is aborted). Any HTTP status is a response, not an error.
    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let transfer = Transfer(request: request, userAgent: configuration.userAgent)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                transfer.mode = .collect(continuation)
                loop.submit(.start(transfer))
            }
        } onCancel: {
            transfer.cancel(via: loop)
        }
    }

    /// Sends a request and returns once the response head has arrived; the body follows as a stream.
    public func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        let transfer = Transfer(request: request, userAgent: configuration.userAgent)
        let channel = BodyChannel(highWater: configuration.streamHighWater)
        let (status, headers) = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                transfer.mode = .stream(head: continuation, channel: channel)
                loop.submit(.start(transfer))
            }
        } onCancel: {
            transfer.cancel(via: loop)
        }
        let reader = BodyReader(channel: channel, transfer: transfer, loop: loop)
        return HTTPStreamingResponse(status: status, headers: headers, body: HTTPBodyStream(reader: reader))
    }

    /// Stops the loop: transfers still under way fail with `CurlError.shutDown`.
    public func shutdown() {
        loop.submit(.shutdown)
    }

    deinit {
        loop.submit(.shutdown)
    }
}

import NIOCore
import NIOHTTPTypes
import ServerRuntime

/// Guards one server connection against clients that send too slowly, and tells a request
/// whether its client is still there.
///
/// **Slow requests.** An idle timeout alone does not stop a client that sends one header byte
/// every few seconds: each byte resets it. So from the first byte of a request until its end,
/// a request has `readTimeout` to arrive whole; a connection that takes longer is closed.
///
/// **A client gone.** When the client closes its side (or the connection drops), `closed`
/// completes, so a request whose client left can stop its work (MCP 2026-07-28: closing the
/// connection cancels the call).
///
/// Two handlers share this object: the guard itself, first in the pipeline (it sees bytes
/// before HTTP decoding, so the first byte of a request starts the clock), and a
/// `RequestEndObserver` after decoding, which stops the clock when the request's end arrives.
public final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let readTimeout: TimeAmount
    /// When the request being read began to arrive; nil between requests.
    private var requestStarted: NIODeadline?
    /// One timer per connection, armed while requests arrive: a request starts no timer of its
    /// own (scheduling and cancelling one per request was a twentieth of a host's CPU).
    private var timer: Scheduled<Void>?
    let closed = Latch()

    init(readTimeout: TimeAmount) {
        self.readTimeout = readTimeout
    }

    /// The handlers to install on a new connection: the observer (after HTTP decoding), which
    /// places the guard first in the pipeline when it is added.
    public static func handlers(readTimeout: Duration) -> [any RemovableChannelHandler] {
        let guardHandler = ConnectionGuard(readTimeout: .nanoseconds(readTimeout.nanosecondsValue))
        return [RequestEndObserver(guard: guardHandler)]
    }

    /// The signal that the client of `channel` has gone; nil on a connection without a guard.
    public static func closed(on channel: any Channel) async -> Latch? {
        try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: ConnectionGuard.self).closed
        }.get()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        closed.open()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if requestStarted == nil {
            let now = context.eventLoop.now
            requestStarted = now
            if timer == nil { arm(context, at: now + readTimeout) }
        }
        context.fireChannelRead(data)
    }

    /// The timer fires at `deadline`: a request still arriving then that began a timeout ago
    /// closes the connection; one that began later arms it for its own deadline.
    private func arm(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            guard let started = requestStarted else { return }
            if started + readTimeout <= context.eventLoop.now {
                // The request did not arrive whole in time: a slow or stalled client.
                context.close(promise: nil)
            } else {
                arm(context, at: started + readTimeout)
            }
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            closed.open()
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        closed.open()
        context.fireChannelInactive()
    }

    /// The request being read has arrived whole.
    fileprivate func requestEnded() {
        requestStarted = nil
    }
}

/// Tells the connection's `ConnectionGuard` when a request has arrived whole.
final class RequestEndObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let guardHandler: ConnectionGuard

    init(guard guardHandler: ConnectionGuard) {
        self.guardHandler = guardHandler
    }

    func handlerAdded(context: ChannelHandlerContext) {
        try? context.pipeline.syncOperations.addHandler(guardHandler, position: .first)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) { guardHandler.requestEnded() }
        context.fireChannelRead(data)
    }
}

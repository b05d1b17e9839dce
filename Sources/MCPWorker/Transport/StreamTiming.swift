import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import MCP
import NIOCore
import ServerRuntime
import SessionModel
import Synchronization

/// When a stream with nothing to say speaks: a keep-alive comment every `keepAliveInterval`,
/// and for a call that asked for progress a "still waiting" heartbeat once no event has been
/// sent for `heartbeatAfter`. The clock and the wait between ticks are inputs, so tests drive
/// the ticks.
struct StreamTiming: Sendable {
    var keepAliveInterval: Duration = .seconds(1)
    var heartbeatAfter: Duration = .seconds(2)
    let clock: ServerClock
    /// The wait between ticks: the clock's sleep, unless a test fires ticks itself.
    var sleep: (@Sendable (Duration) async throws -> Void)? = nil

    /// What a tick sends.
    enum Tick: Equatable {
        case keepAlive
        /// A progress notification, after waiting this many whole seconds.
        case heartbeat(waitedSeconds: Int)
    }

    /// The decision of one tick: `idleFor` since the last event, `elapsed` since the call began.
    func tick(idleFor: Duration, elapsed: Duration, reportsProgress: Bool) -> Tick {
        guard reportsProgress, idleFor >= heartbeatAfter else { return .keepAlive }
        return .heartbeat(waitedSeconds: Int(elapsed.components.seconds))
    }

    /// Ticks until cancelled: the companion of a streamed call.
    func heartbeat(_ events: EventStream, _ reporter: StreamProgress?) async {
        let started = clock.now
        while !Task.isCancelled {
            try? await (sleep ?? clock.sleep)(keepAliveInterval)
            if Task.isCancelled { break }
            switch tick(idleFor: events.idleFor, elapsed: clock.elapsed(since: started), reportsProgress: reporter != nil) {
            case .keepAlive:
                events.keepAlive()
            case .heartbeat(let waited):
                await reporter?.send(progress: 0, message: "waiting for Greptile (\(waited) s)")
            }
        }
    }
}

import Clocks
import Foundation

/// Time as an input: every part of the servers that waits, measures or stamps is given a
/// `ServerClock` instead of reading the system's, so tests drive time (`TestClock`) instead of
/// sleeping. The executables pass `.system`, the one place the real clocks are read.
public struct ServerClock: Sendable {
    /// For waits and durations (never goes back).
    public let monotonic: AnyClock<Duration>
    /// Seconds since the epoch, for what is stored or compared across machines.
    public let wall: @Sendable () -> Double

    public init(monotonic: AnyClock<Duration>, wall: @escaping @Sendable () -> Double) {
        self.monotonic = monotonic
        self.wall = wall
    }

    /// The system's clocks: the continuous clock and the time of day.
    public static let system = ServerClock(
        monotonic: AnyClock(ContinuousClock()),
        // The only read of the time of day in the servers.
        wall: { Date().timeIntervalSince1970 })

    /// A clock that moves only when `clock` is advanced, its time of day starting at `wallStart`.
    public static func driven(by clock: TestClock<Duration>, wallStart: Double = 1_764_000_000) -> ServerClock {
        let origin = clock.now
        return ServerClock(monotonic: AnyClock(clock), wall: { wallStart + origin.duration(to: clock.now).secondsValue })
    }

    public typealias Instant = AnyClock<Duration>.Instant

    /// Now, on the monotonic clock.
    public var now: Instant { monotonic.now }

    /// Seconds since the epoch, now.
    public var wallNow: Double { wall() }

    /// Time passed since `start`.
    public func elapsed(since start: Instant) -> Duration { start.duration(to: monotonic.now) }

    public func sleep(for duration: Duration) async throws {
        try await monotonic.sleep(for: duration)
    }
}

import HTTPServing
import Metrics
import ServerRuntime

extension Metrics.Timer {
    /// Records the time elapsed since `start` on the continuous clock.
    public func record(since start: ContinuousClock.Instant) {
        recordNanoseconds((ContinuousClock.now - start).nanosecondsValue)
    }
}

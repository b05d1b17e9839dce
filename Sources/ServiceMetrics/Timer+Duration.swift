import Metrics

extension Metrics.Timer {
    /// Records the time elapsed since `start` on the continuous clock.
    public func record(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let (seconds, attoseconds) = elapsed.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

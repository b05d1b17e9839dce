extension Duration {
    /// This duration in whole nanoseconds (what NIO's `TimeAmount` and swift-metrics take).
    public var nanosecondsValue: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// This duration in seconds, with its fraction.
    public var secondsValue: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

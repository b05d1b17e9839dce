import Metrics
import Prometheus
import ServerRuntime
import Synchronization

/// Request counts and latency per route (`<prefix>_requests_total`,
/// `<prefix>_request_duration_seconds`), and the Prometheus text of every metric.
public final class RouteMetrics: Sendable {
    private struct Key: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private let registry: PrometheusCollectorRegistry?
    private let counters = Mutex<[Key: Metrics.Counter]>([:])
    private let timers = Mutex<[String: Metrics.Timer]>([:])
    private let prefix: String

    public init(registry: PrometheusCollectorRegistry?, prefix: String) {
        self.registry = registry
        self.prefix = prefix
    }

    /// One request answered, and how long it took.
    public func record(route: String, method: String, status: Int, duration: Duration) {
        let key = Key(route: route, method: method, status: status)
        let counter = counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Metrics.Counter(
                label: "\(prefix)_requests_total",
                dimensions: [("route", route), ("method", method), ("status", String(status))])
            counters[key] = counter
            return counter
        }
        counter.increment()
        let timerKey = route + " " + method
        let timer = timers.withLock { timers in
            if let timer = timers[timerKey] { return timer }
            let timer = Metrics.Timer(
                label: "\(prefix)_request_duration_seconds", dimensions: [("route", route), ("method", method)],
                preferredDisplayUnit: .seconds)
            timers[timerKey] = timer
            return timer
        }
        timer.recordNanoseconds(duration.nanosecondsValue)
    }

    /// The Prometheus text exposition of every registered metric.
    public func exposition() -> [UInt8] {
        registry?.emitToBuffer() ?? Array("# metrics are not enabled in this process\n".utf8)
    }
}

import Foundation

/// When to try a call to a host again, and how long to wait first. Pure: no I/O, no clock.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included.
    public var attempts: Int
    /// The wait after the first failure; each later wait doubles.
    public var initialDelay: Duration
    /// Each wait is scaled by a random factor in 1 ± jitter, so retries of many workers spread out.
    public var jitter: Double

    public init(attempts: Int = 3, initialDelay: Duration = .milliseconds(100), jitter: Double = 0.2) {
        self.attempts = attempts
        self.initialDelay = initialDelay
        self.jitter = jitter
    }

    /// The wait after failed attempt `attempt` (1-based), or nil when no attempt is left.
    public func delay(afterAttempt attempt: Int, random: Double) -> Duration? {
        guard attempt < attempts else { return nil }
        let base = initialDelay * (1 << (attempt - 1))
        return base * (1 + jitter * (2 * random - 1))
    }

    /// Whether an HTTP status is worth another attempt, for every caller (durable hosts,
    /// Greptile, GitHub): a timeout (408), throttling (429), or a server failure (5xx) other
    /// than those that say the request itself can never work (501, 505).
    public static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 429 || ((500...599).contains(status) && status != 501 && status != 505)
    }
}

extension HTTPResponse {
    /// `Retry-After` as a wait: seconds, or an HTTP date from `now` (seconds since the epoch).
    /// Nil when absent or unreadable.
    public func retryAfter(now: Double) -> Duration? {
        guard let value = headers["Retry-After"]?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Double(value), seconds >= 0 { return .milliseconds(Int64(seconds * 1000)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .milliseconds(Int64(max(0, date.timeIntervalSince1970 - now) * 1000))
    }
}

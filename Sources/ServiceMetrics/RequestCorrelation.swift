import Logging

/// The id nginx gives a request (`$request_id`, sent as `X-Request-ID`), carried with the work
/// the request does: every log line written meanwhile says `request_id=...`, and a worker's
/// calls to its hosts send it on, so one request is found in nginx's access log, the worker's
/// log and the host's.
public enum RequestCorrelation {
    @TaskLocal public static var requestID: String?

    public static let header = "X-Request-ID"

    /// The metadata of the request under way, for every logger (`ServiceRunner.bootstrap`).
    public static let metadataProvider = Logger.MetadataProvider {
        guard let id = requestID else { return [:] }
        return ["request_id": .string(id)]
    }

    /// `value` when it is an id we may log and send on: 1 to 64 letters, digits, `-` or `_`
    /// (nginx's are 32 hex digits); anything else is ignored.
    public static func validID(_ value: String?) -> String? {
        guard let value, (1...64).contains(value.utf8.count) else { return nil }
        let allowed = value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2D || byte == 0x5F
        }
        return allowed ? value : nil
    }

    /// Runs `work` with the request id of `headerValue` (when valid) in force.
    public static func with<Result>(_ headerValue: String?, _ work: () async throws -> Result) async rethrows -> Result {
        guard let id = validID(headerValue) else { return try await work() }
        return try await $requestID.withValue(id) { try await work() }
    }
}

/// Why the host API refused or failed a request: a stable code for programs and a sentence for people.
///
/// The codes are part of the host API (README); hosts answer them as
/// `{"success": false, "error": {"code": "...", "message": "..."}}`.
public struct APIError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The error codes of the host API, each with the HTTP status it is answered with.
public enum ErrorCode: String, Sendable, Codable, CaseIterable {
    case invalidJSON = "invalid_json"
    case invalidRequest = "invalid_request"
    case unknownOperation = "unknown_operation"
    case missingField = "missing_field"
    case invalidField = "invalid_field"
    case invalidSessionID = "invalid_session_id"
    case limitExceeded = "limit_exceeded"
    case payloadTooLarge = "payload_too_large"
    case unsupportedMediaType = "unsupported_media_type"
    case idempotencyKeyReused = "idempotency_key_reused"
    case invalidIdempotencyKey = "invalid_idempotency_key"
    case unauthorized = "unauthorized"
    case notFound = "not_found"
    case sessionNotFound = "session_not_found"
    case methodNotAllowed = "method_not_allowed"
    case misdirected = "misdirected"
    /// A ring change is moving the session between hosts; retry shortly.
    case ringChanging = "ring_changing"
    /// A hinted request found no copy of the session held for its owner: send `POST
    /// /hints/{id}/seed` with the last state you know, then the request again.
    case hintSeedRequired = "hint_seed_required"
    /// The host will not hold writes for this session: its owner answers again (send there).
    case hintRefused = "hint_refused"
    /// `put_record` of a session that exists and holds something else.
    case sessionExists = "session_exists"
    /// A write through a share the session's owner no longer grants (or never granted).
    case notShared = "not_shared"
    /// A write's `expect` did not hold: another writer changed the session first.
    case preconditionFailed = "precondition_failed"
    /// A write's `expect_messages` did not hold: the session's history is not the one the
    /// writer read (another writer appended or replaced messages first).
    case historyChanged = "history_changed"
    /// A write carrying data gathered before its principal's data was deleted.
    case principalErased = "principal_erased"
    case storageUnavailable = "storage_unavailable"
    case shuttingDown = "shutting_down"
    case internalError = "internal_error"

    /// The HTTP status code a host answers this error with.
    public var httpStatus: Int {
        switch self {
        case .invalidJSON, .invalidRequest, .unknownOperation, .missingField, .invalidField, .invalidSessionID,
            .invalidIdempotencyKey:
            400
        case .unauthorized: 401
        case .notShared: 403
        case .notFound, .sessionNotFound: 404
        case .methodNotAllowed: 405
        case .payloadTooLarge: 413
        case .unsupportedMediaType: 415
        case .misdirected: 421
        case .hintSeedRequired, .sessionExists, .principalErased, .preconditionFailed, .historyChanged: 409
        case .limitExceeded, .idempotencyKeyReused: 422
        case .storageUnavailable, .shuttingDown, .ringChanging, .hintRefused: 503
        case .internalError: 500
        }
    }
}

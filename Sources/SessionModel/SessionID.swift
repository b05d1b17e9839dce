/// Session ids: 1 to `maxIdLength` bytes of `A-Z a-z 0-9 . _ ~ : - @ +`.
///
/// The set is the URL path's unreserved characters plus `:`, `@` and `+` (which a path takes
/// as they are, and a conversation id holds when its principal is an email address); callers
/// percent-encode ids in queries (`HostAPI.Route`), so ids read the same in logs, SQL and URLs.
public enum SessionID {
    /// The characters an id may hold, as messages name them.
    public static let alphabet = "A-Z a-z 0-9 . _ ~ : - @ +"

    /// Checks an id, returning it unchanged or throwing a `APIError` that says what is wrong.
    @discardableResult
    public static func validate(_ id: String, limits: SessionLimits = .default) throws(APIError) -> String {
        let bytes = id.utf8
        guard !bytes.isEmpty else {
            throw APIError(.invalidSessionID, "session id must not be empty")
        }
        guard bytes.count <= limits.maxIdLength else {
            throw APIError(.invalidSessionID, "session id is \(bytes.count) bytes; the limit is \(limits.maxIdLength)")
        }
        guard bytes.allSatisfy(isAllowed) else {
            throw APIError(.invalidSessionID, "session id may hold only \(SessionID.alphabet)")
        }
        guard id != "." && id != ".." else {
            throw APIError(.invalidSessionID, "session id must not be '.' or '..'")
        }
        return id
    }

    /// Whether one byte may appear in an id.
    @inlinable
    public static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "-"), UInt8(ascii: "@"),
            UInt8(ascii: "+"):
            true
        default:
            false
        }
    }
}

/// The ids records are stored under, each convention spelled once. Workers choose them; hosts
/// store them like any id (and place `a~b` with `a`, see `HashRing`); held copies are a host's own.
public enum StorageKeys {
    /// Where every conversation id starts.
    public static let conversationPrefix = "conv:"

    /// A conversation of `principal`: `conv:<principal>:<session_id>`.
    public static func conversation(principal: String, sessionID: String) -> String {
        "\(conversationPrefix)\(principal):\(sessionID)"
    }

    /// Where a principal's conversations start in id order (everyone's for nil).
    public static func conversations(of principal: String?) -> String {
        principal.map { "\(conversationPrefix)\($0):" } ?? conversationPrefix
    }

    /// The principal and session id of a conversation's id; nil when it is not one.
    public static func conversationParts(_ id: String) -> (principal: String, sessionID: String)? {
        guard id.hasPrefix(conversationPrefix) else { return nil }
        let rest = id.dropFirst(conversationPrefix.count)
        guard let colon = rest.firstIndex(of: ":") else { return nil }
        return (String(rest[..<colon]), String(rest[rest.index(after: colon)...]))
    }

    /// Where every MCP transport session id (and its event journal's) starts.
    public static let transportPrefix = "mcp-"

    /// An MCP transport session (`MCP-Session-Id`): `mcp-<id>`.
    public static func transportSession(_ id: String) -> String { "\(transportPrefix)\(id)" }

    /// The event journal of a transport session: `mcp-<id>~events`, which the ring places with
    /// the session because ids are placed by their part before `~`.
    public static func events(ofTransportSession id: String) -> String { "\(transportSession(id))~events" }

    /// Where every usage record starts.
    public static let usagePrefix = "usage:"

    /// A principal's usage on a day (UTC): `usage:<principal>:<YYYY-MM-DD>`.
    public static func usage(principal: String, day: String) -> String { "\(usagePrefix)\(principal):\(day)" }

    /// Where a principal's usage records start (everyone's for nil).
    public static func usage(of principal: String?) -> String { principal.map { "\(usagePrefix)\($0):" } ?? usagePrefix }

    /// The session id a share gives the principal it is shared with starts so:
    /// `from-<owner>-<12 hex digits>`.
    public static let sharePointerPrefix = "from-"

    /// Where every record of sign-in starts (clients, logins under way, codes, grants, refresh
    /// tokens, consents, revocations, signing keys): the worker's bookkeeping, never exported.
    public static let signInPrefix = "oauth:"

    /// A sign-in record of `kind` (`client`, `pending`, `code`, `grant`, `refresh`, `consent`,
    /// `revoked`, `keys`): `oauth:<kind>:<parts...>`.
    public static func signIn(_ kind: String, _ parts: String...) -> String {
        ([signInPrefix + kind] + parts).joined(separator: ":")
    }

    /// Where every task record starts (a `tools/call` run as an MCP task).
    public static let taskPrefix = "task:"

    /// A task: `task:<id>` (32 hex digits, 128 random bits).
    public static func task(_ id: String) -> String { taskPrefix + id }

    /// Where the records that find a running task by its question start.
    public static let taskQuestionPrefix = "task-question:"

    /// The running task of one principal's question: `task-question:<digest>`.
    public static func taskQuestion(_ digest: String) -> String { taskQuestionPrefix + digest }

    /// Where a host's copies held for unreachable owners start: no session id can (`!` is
    /// outside the id alphabet).
    public static let heldCopyPrefix = "!held/"
}

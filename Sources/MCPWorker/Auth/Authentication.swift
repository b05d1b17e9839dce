import Foundation
import Settings
import SignIn

/// Who sent a request: decided once, by `Authentication`, and handed to everything downstream
/// (the MCP endpoint, `/ring`, `/admin`), which asks it what it may do and never reads a key.
struct Caller: Sendable, Hashable {
    /// What a caller may do.
    enum Scope: Sendable, Hashable {
        /// Use the MCP endpoint (and `/ring`) as its principal.
        case tools
        /// Act on any principal's data (`/admin`): an operator.
        case operate
    }

    /// The principal whose sessions, conversations and usage the caller uses; nil for the
    /// operators' key, which is nobody's.
    let principal: String?
    let scopes: Set<Scope>

    /// A client of the MCP endpoint.
    static func client(_ principal: String) -> Caller { Caller(principal: principal, scopes: [.tools]) }

    /// The operators' key: everyone's data in `/admin`, and no MCP endpoint of its own.
    static let `operator` = Caller(principal: nil, scopes: [.operate])

    var mayOperate: Bool { scopes.contains(.operate) }

    /// The principal the caller uses the MCP endpoint as; nil: it may not.
    var toolsPrincipal: String? { scopes.contains(.tools) ? principal : nil }

    /// Whether this caller may act on `principal`'s data.
    func mayActFor(_ principal: String) -> Bool {
        mayOperate || self.principal == principal
    }
}

/// The one place a worker decides who a request comes from.
///
/// A key comes as `Authorization: Bearer <key>`, or (a person at a browser's prompt, where a
/// route offers it) as the password of `Basic` credentials; a person signed in with the team's
/// identity provider presents an access token as a bearer token (`SignInService`). An open
/// worker (no client keys and no sign-in, which only loopback allows) treats everyone as the
/// principal `local`.
struct Authentication: Sendable {
    /// The client keys in force (they change when `api_keys_file` does).
    let keys: ClientKeys
    /// The operators' key, when one is configured.
    let adminKey: String?
    /// Sign-in, when configured: access tokens are checked by it.
    let signIn: SignInService?

    /// The caller behind an `Authorization` header; nil when it must be refused (401).
    func caller(authorization: String?) async -> Caller? {
        if let decided = Self.decide(presented: Self.presentedKey(authorization), keys: keys.keys, adminKey: adminKey, open: signIn == nil) {
            return decided
        }
        guard let signIn, let token = bearerToken(in: authorization) else { return nil }
        return await signIn.principal(ofToken: String(token)).map(Caller.client)
    }

    /// What a refused request is told: where to sign in, when sign-in is on.
    var challenge: String { signIn?.challenge ?? #"Bearer realm="greptile-mcp""# }

    /// The decision on a key, from what was presented and what is configured; `open`: no keys
    /// and no sign-in make everyone `local`.
    static func decide(presented: String?, keys: APIKeys, adminKey: String?, open: Bool = true) -> Caller? {
        let isAdmin = adminKey.map { admin in presented.map { constantTimeEqual(Array($0.utf8), Array(admin.utf8)) } ?? false } ?? false
        if keys.isEmpty, open {
            // Open (loopback only): everyone is `local`, and an operator too unless an admin
            // key says who is.
            return Caller(principal: "local", scopes: adminKey == nil || isAdmin ? [.tools, .operate] : [.tools])
        }
        if isAdmin { return .operator }
        return presented.flatMap { keys.principal(forKey: $0) }.map(Caller.client)
    }

    /// The key a header presents: a bearer token, or a Basic password.
    static func presentedKey(_ authorization: String?) -> String? {
        bearerToken(in: authorization).map(String.init) ?? basicPassword(in: authorization)
    }
}

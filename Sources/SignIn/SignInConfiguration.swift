import Foundation
import SessionModel

/// How a worker lets people sign in: its public origin (the OAuth issuer and the protected
/// resource's origin), the team's identity provider the login is delegated to, and who may
/// sign in (README, "Sign-in").
public struct SignInConfiguration: Sendable {
    /// Where clients reach the server, an origin: `https://mcp.example.com` (no path, no slash).
    public var publicURL: String
    public var provider: ProviderKind
    /// The provider's OAuth client, registered for `<publicURL>/oauth/callback`.
    public var clientID: String
    public var clientSecret: String
    public var allow: AllowList
    /// Seconds an access token lives; revocations reach every worker sooner (`revocationPoll`).
    public var accessTokenLifetime: Double = 3_600
    /// Seconds a grant (its refresh token) lives unused.
    public var refreshTokenLifetime: Double = 30 * 86_400
    /// Seconds an authorization code may wait to be exchanged.
    public var codeLifetime: Double = 60
    /// Seconds a person has to log in at the provider and consent.
    public var loginLifetime: Double = 600
    /// How often each worker reads the revocations (a removed person is refused within it).
    public var revocationPoll: Duration = .seconds(15)
    /// Client ID Metadata Documents may be fetched from private and loopback addresses (tests,
    /// a private network); off by default: such a fetch is a way into the server's network.
    public var metadataAllowPrivate = false
    /// Largest client metadata document, and how long its fetch may take.
    public var metadataMaxBytes = 8 * 1024
    public var metadataTimeout: Duration = .seconds(5)
    /// CA certificates (PEM) to verify the provider and metadata documents with, instead of the system's.
    public var caFile: String?

    public enum ProviderKind: Sendable, Equatable {
        /// Any OpenID Connect provider, found by discovery at `issuer`.
        case oidc(issuer: String)
        /// GitHub OAuth: `web` is GitHub's site (`https://github.com`), `api` its REST API.
        case github(web: String, api: String)
    }

    public init(publicURL: String, provider: ProviderKind, clientID: String, clientSecret: String, allow: AllowList) {
        self.publicURL = publicURL
        self.provider = provider
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.allow = allow
    }

    /// The MCP endpoint: the resource tokens are issued for (RFC 8707).
    public var resource: String { publicURL + "/mcp" }
    /// The authorization server's issuer identifier (RFC 8414, RFC 9207).
    public var issuer: String { publicURL }
    /// Where the provider sends a person back after login.
    public var callbackURL: String { publicURL + "/oauth/callback" }
    /// Where protected resource metadata is (RFC 9728, the path-inserted form for `/mcp`).
    public var resourceMetadataURL: String { publicURL + "/.well-known/oauth-protected-resource/mcp" }

    /// Whether `url` can be a public URL: an origin of http(s), https unless on loopback.
    public static func checkPublicURL(_ url: String) -> String? {
        guard let parts = URLComponents(string: url), let scheme = parts.scheme, let host = parts.host, !host.isEmpty else {
            return "public_url must be an origin like https://mcp.example.com (got '\(url.prefix(100))')"
        }
        guard parts.path.isEmpty, parts.query == nil, parts.fragment == nil, parts.user == nil else {
            return "public_url must be an origin, without a path, query or fragment (got '\(url.prefix(100))')"
        }
        guard scheme == "https" || (scheme == "http" && RedirectURIPolicy.isLoopback(host: host)) else {
            return "public_url must be https (plain http only on loopback) (got '\(url.prefix(100))')"
        }
        return nil
    }
}

/// Who may sign in: exact email addresses (OpenID Connect) or GitHub logins, `@domain` for every
/// verified address at a domain, and `org:NAME` for the members of a GitHub organisation.
/// Written comma-separated (`login_allow`): `alice@example.com,@example.org,org:acme`.
public struct AllowList: Sendable, Equatable {
    public private(set) var people: Set<String> = []
    public private(set) var domains: Set<String> = []
    public private(set) var organisations: Set<String> = []

    public init(parsing text: String) throws(SignInSettingError) {
        for raw in text.split(separator: ",") {
            let entry = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if entry.isEmpty { continue }
            if entry.hasPrefix("org:") {
                let name = String(entry.dropFirst(4))
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                    throw SignInSettingError("login_allow: '\(entry)' is not org:NAME with a GitHub organisation's name")
                }
                organisations.insert(name)
            } else if entry.hasPrefix("@") {
                guard entry.count > 3, entry.dropFirst().contains("."), !entry.dropFirst().contains("@") else {
                    throw SignInSettingError("login_allow: '\(entry)' is not @domain")
                }
                domains.insert(String(entry.dropFirst()))
            } else {
                guard !entry.contains(" ") else { throw SignInSettingError("login_allow: '\(entry)' is not an address, @domain or org:NAME") }
                people.insert(entry)
            }
        }
        guard !people.isEmpty || !domains.isEmpty || !organisations.isEmpty else {
            throw SignInSettingError("login_allow names nobody: give addresses, @domains or org:NAMEs of who may sign in")
        }
    }

    /// Whether a signed-in identity may use the server: by its address or login, its domain,
    /// or an organisation it belongs to.
    public func allows(_ identity: Identity) -> Bool {
        let name = identity.name.lowercased()
        if people.contains(name) { return true }
        if identity.kind == .email, let at = name.lastIndex(of: "@"), domains.contains(String(name[name.index(after: at)...])) { return true }
        return !organisations.isDisjoint(with: identity.organisations.map { $0.lowercased() })
    }

    /// Whether a principal may still use the server, as far as this list alone can tell (an
    /// organisation's member is not known without asking GitHub: checked at sign-in only).
    public func stillAllows(principal: String) -> Bool {
        if !organisations.isEmpty, principal.hasSuffix(Identity.githubSuffix) { return true }
        return allows(Identity(kind: principal.hasSuffix(Identity.githubSuffix) ? .github : .email, name: Identity.name(ofPrincipal: principal)))
    }
}

/// Who the provider says signed in.
public struct Identity: Sendable, Equatable {
    public enum Kind: Sendable { case email, github }
    public var kind: Kind
    /// A verified email address, or a GitHub login.
    public var name: String
    /// GitHub organisations the person belongs to.
    public var organisations: [String] = []

    public init(kind: Kind, name: String, organisations: [String] = []) {
        self.kind = kind
        self.name = name
        self.organisations = organisations
    }

    /// What follows a GitHub login in its principal: key names cannot hold `@`, so no
    /// signed-in person is ever taken for a client key's principal.
    public static let githubSuffix = "@github"

    /// The principal conversations, sharing, usage and erasure know the person by: the
    /// address in lower case, or `<login>@github`; nil when it cannot be one (too long, or
    /// characters outside the principal alphabet).
    public var principal: String? {
        let principal = kind == .email ? name.lowercased() : name.lowercased() + Self.githubSuffix
        return SessionUpdate.isValidPrincipal(principal) && !principal.contains(":") ? principal : nil
    }

    static func name(ofPrincipal principal: String) -> String {
        principal.hasSuffix(githubSuffix) ? String(principal.dropLast(githubSuffix.count)) : principal
    }
}

/// A sign-in setting that cannot be used, with a sentence saying why.
public struct SignInSettingError: Error, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
}

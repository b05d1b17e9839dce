import Foundation

/// An authorization request (`GET /authorize`) once checked: a known client, its registered
/// redirect URI, PKCE with S256, this server as the resource.
public struct AuthorizationRequest: Sendable, Equatable, Codable {
    public var clientID: String
    public var redirectURI: String
    /// The client's `state`, given back with the code.
    public var state: String?
    public var codeChallenge: String
    public var resource: String
    public var scope: String

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id"
        case redirectURI = "redirect_uri"
        case state
        case codeChallenge = "code_challenge"
        case resource, scope
    }

    /// How a refused request is answered: a page for the person when the client or its
    /// redirect cannot be trusted (never a redirect to an unchecked URI), otherwise an error
    /// sent back to the client's redirect URI (RFC 6749 §4.1.2.1).
    public enum Refusal: Error, Sendable, Equatable {
        case page(String)
        case redirect(to: String, error: String, description: String, state: String?)
    }

    /// The scopes this server grants: `mcp`, the use of the MCP endpoint.
    public static let scopes = ["mcp"]

    /// The client a request names, before anything else is read: its `client_id`.
    public static func clientID(in query: [String: String]) throws(Refusal) -> String {
        guard let id = query["client_id"], !id.isEmpty, id.utf8.count <= 2_000 else {
            throw .page("The sign-in link is missing its client_id. Start again from your MCP client.")
        }
        return id
    }

    /// Checks a request's parameters against its client (nil: unknown to this server).
    public static func check(_ query: [String: String], client: RegisteredClient?, resource: String) throws(Refusal) -> AuthorizationRequest {
        guard let client else { throw .page("This MCP client is not registered with this server. Start again from your MCP client.") }
        guard let redirect = query["redirect_uri"] ?? (client.redirectURIs.count == 1 ? client.redirectURIs[0] : nil) else {
            throw .page("The sign-in link is missing its redirect_uri. Start again from your MCP client.")
        }
        guard RedirectURIPolicy.matches(redirect, registered: client.redirectURIs) else {
            throw .page("The sign-in link's redirect_uri is not one \(client.name) registered, so nothing is sent there.")
        }
        let state = query["state"]
        func refused(_ error: String, _ description: String) -> Refusal {
            .redirect(to: redirect, error: error, description: description, state: state)
        }
        guard query["response_type"] == "code" else { throw refused("unsupported_response_type", "response_type must be code") }
        guard let challenge = query["code_challenge"], query["code_challenge_method"] == "S256", PKCE.isChallenge(challenge) else {
            throw refused("invalid_request", "PKCE is required: code_challenge with code_challenge_method S256")
        }
        let asked = query["resource"] ?? resource
        guard asked == resource || asked == resource + "/" else {
            throw refused("invalid_target", "this server issues tokens for \(resource) only")
        }
        let scopes = (query["scope"] ?? "").split(separator: " ").map(String.init)
        guard scopes.allSatisfy({ Self.scopes.contains($0) || $0 == "offline_access" }) else {
            throw refused("invalid_scope", "the scopes offered are \(Self.scopes.joined(separator: " "))")
        }
        return AuthorizationRequest(
            clientID: client.clientID, redirectURI: redirect, state: state, codeChallenge: challenge, resource: resource,
            scope: Self.scopes.joined(separator: " "))
    }

    /// The client's redirect URI with the code (or an error) and the issuer (RFC 9207).
    public static func redirect(_ uri: String, parameters: [(String, String?)]) -> String {
        var parts = URLComponents(string: uri) ?? URLComponents()
        var items = parts.queryItems ?? []
        for (name, value) in parameters { if let value { items.append(URLQueryItem(name: name, value: value)) } }
        parts.queryItems = items
        // `+` is a space to many parsers: percent-encoded too.
        parts.percentEncodedQuery = parts.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        return parts.string ?? uri
    }
}

/// A token request (`POST /token`) once its form is read.
public enum TokenRequest: Sendable, Equatable {
    case authorizationCode(code: String, redirectURI: String?, verifier: String, clientID: String?)
    case refresh(token: String, clientID: String?)

    /// A refusal as RFC 6749 §5.2 answers it.
    public struct Refusal: Error, Sendable, Equatable {
        public let error: String
        public let description: String
        /// 401 for a client that failed to authenticate, 400 otherwise.
        public var status: Int { error == "invalid_client" ? 401 : 400 }

        public init(_ error: String, _ description: String) {
            self.error = error
            self.description = description
        }
    }

    public static func read(_ form: [String: String]) throws(Refusal) -> TokenRequest {
        switch form["grant_type"] {
        case "authorization_code":
            guard let code = form["code"], !code.isEmpty else { throw Refusal("invalid_request", "code is required") }
            guard let verifier = form["code_verifier"], PKCE.isVerifier(verifier) else {
                throw Refusal("invalid_request", "code_verifier is required: PKCE (S256)")
            }
            return .authorizationCode(code: code, redirectURI: form["redirect_uri"], verifier: verifier, clientID: form["client_id"])
        case "refresh_token":
            guard let token = form["refresh_token"], !token.isEmpty else { throw Refusal("invalid_request", "refresh_token is required") }
            return .refresh(token: token, clientID: form["client_id"])
        case let other?:
            throw Refusal("unsupported_grant_type", "grant_type \(other.prefix(40)) is not offered: authorization_code and refresh_token are")
        case nil:
            throw Refusal("invalid_request", "grant_type is required")
        }
    }
}

/// Form bodies and queries as name → value (the first of a repeated name).
public enum FormBody {
    public static func parse(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(parts[0]), values[name] == nil else { continue }
            values[name] = parts.count > 1 ? decode(parts[1]) ?? "" : ""
        }
        return values
    }

    static func decode(_ part: Substring) -> String? {
        String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// `name=value&...`, each part percent-encoded.
    public static func encode(_ pairs: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return pairs.map {
            "\($0.0.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
        }
        .joined(separator: "&")
    }
}

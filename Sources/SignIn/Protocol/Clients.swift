import Foundation
import SessionModel

/// A client the authorization server knows: registered dynamically (RFC 7591), or described by
/// a Client ID Metadata Document at its `client_id` URL.
public struct RegisteredClient: Sendable, Equatable, Codable {
    public var clientID: String
    public var name: String
    public var redirectURIs: [String]
    /// How it authenticates at the token endpoint: `none` (a public client, PKCE alone),
    /// `client_secret_basic` or `client_secret_post`.
    public var authMethod: String
    /// The SHA-256 of its secret, for a confidential client.
    public var secretHash: String?

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id"
        case name = "client_name"
        case redirectURIs = "redirect_uris"
        case authMethod = "token_endpoint_auth_method"
        case secretHash = "secret_hash"
    }

    /// Whether its `client_id` is a metadata document's URL.
    public var isMetadataDocument: Bool { clientID.hasPrefix("https://") }

    /// How a client authenticates at the token endpoint, by the methods this server offers.
    public static let authMethods = ["none", "client_secret_basic", "client_secret_post"]
}

/// A registration refused, as RFC 7591 §3.2.2 answers it.
public struct RegistrationRefusal: Error, Sendable, Equatable {
    /// `invalid_redirect_uri` or `invalid_client_metadata`.
    public let error: String
    public let description: String
}

/// Reading a client's metadata: a Dynamic Client Registration request, or a Client ID Metadata
/// Document. Pure: what is accepted and why not.
public enum ClientMetadata {
    /// Most redirect URIs one client may register.
    public static let maxRedirectURIs = 10

    /// A registration request's client, with a new id (and secret, unless it asked for none).
    public static func register(_ body: JSONValue, clientID: String, secret: String) throws(RegistrationRefusal) -> RegisteredClient {
        guard case .object(let fields) = body else { throw invalid("the body must be a JSON object of client metadata") }
        var client = try read(fields, clientID: clientID)
        if client.authMethod != "none" { client.secretHash = Digests.hash(secret) }
        return client
    }

    /// A Client ID Metadata Document fetched from `url`: its `client_id` must be that URL, and
    /// it authenticates with nothing but PKCE (it is public: anyone can read its document).
    public static func document(_ body: JSONValue, url: String) throws(RegistrationRefusal) -> RegisteredClient {
        guard case .object(let fields) = body else { throw invalid("the client metadata document is not a JSON object") }
        guard fields["client_id"]?.stringValue == url else {
            throw invalid("the client metadata document's client_id is not its own URL")
        }
        guard fields["client_secret"] == nil, fields["client_secret_expires_at"] == nil else {
            throw invalid("a client metadata document must not carry a client secret")
        }
        var client = try read(fields, clientID: url)
        guard client.authMethod == "none" else {
            throw invalid("a client metadata document's client authenticates with none (PKCE): got \(client.authMethod)")
        }
        client.secretHash = nil
        return client
    }

    private static func read(_ fields: JSONObject, clientID: String) throws(RegistrationRefusal) -> RegisteredClient {
        guard case .array(let list)? = fields["redirect_uris"], !list.isEmpty, list.count <= maxRedirectURIs else {
            throw RegistrationRefusal(error: "invalid_redirect_uri", description: "redirect_uris must list 1 to \(maxRedirectURIs) URIs")
        }
        var uris: [String] = []
        for item in list {
            guard let uri = item.stringValue else {
                throw RegistrationRefusal(error: "invalid_redirect_uri", description: "each redirect URI must be a string")
            }
            if let refusal = RedirectURIPolicy.refusal(uri) { throw RegistrationRefusal(error: "invalid_redirect_uri", description: refusal) }
            uris.append(uri)
        }
        let method = fields["token_endpoint_auth_method"]?.stringValue ?? "client_secret_basic"
        guard RegisteredClient.authMethods.contains(method) else {
            throw invalid("token_endpoint_auth_method must be one of \(RegisteredClient.authMethods.joined(separator: ", "))")
        }
        if case .array(let grants)? = fields["grant_types"] {
            let asked = Set(grants.compactMap(\.stringValue))
            guard asked.contains("authorization_code"), asked.isSubset(of: ["authorization_code", "refresh_token"]) else {
                throw invalid("grant_types may be authorization_code and refresh_token only")
            }
        }
        if case .array(let types)? = fields["response_types"], Set(types.compactMap(\.stringValue)) != ["code"] {
            throw invalid("response_types must be [\"code\"]")
        }
        let name = fields["client_name"]?.stringValue.map { String($0.prefix(100)) } ?? "an MCP client"
        return RegisteredClient(clientID: clientID, name: name, redirectURIs: uris, authMethod: method, secretHash: nil)
    }

    private static func invalid(_ description: String) -> RegistrationRefusal {
        RegistrationRefusal(error: "invalid_client_metadata", description: description)
    }
}

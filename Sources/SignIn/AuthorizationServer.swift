import CurlHTTP
import Foundation
import Logging
import Metrics
import ServerRuntime
import SessionClient
import SessionModel

/// A sign-in request as the HTTP layer hands it over.
public struct SignInRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    /// The form of a POST (`application/x-www-form-urlencoded`), or its JSON body.
    public var form: [String: String]
    public var json: JSONValue?
    public var authorization: String?
    public var cookie: String?

    public init(
        method: String, path: String, query: [String: String] = [:], form: [String: String] = [:], json: JSONValue? = nil,
        authorization: String? = nil, cookie: String? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.form = form
        self.json = json
        self.authorization = authorization
        self.cookie = cookie
    }
}

/// How the HTTP layer answers it.
public enum SignInAnswer: Sendable {
    case json(status: Int, JSONValue, headers: [(String, String)])
    case redirect(String, headers: [(String, String)])
    case page(SignInPages.Page)
}

/// The authorization server on the worker's public origin (MCP authorization, OAuth 2.1): client
/// registration (RFC 7591, or a Client ID Metadata Document), the authorization code flow with
/// PKCE whose login is delegated to the team's provider, consent per client and person, tokens
/// (a short-lived access token, a refresh token rotated at each use), revocation (RFC 7009).
/// Every step's state is in the durable hosts (`GrantStore`): any worker serves any step.
struct AuthorizationServer: Sendable {
    let configuration: SignInConfiguration
    let grants: GrantStore
    let tokens: AccessTokens
    let revocations: Revocations
    let provider: any LoginProvider
    let metadataFetch: ClientMetadataFetch
    let clock: ServerClock
    let logger: Logger

    /// The cookie that ties a consent form to the browser that came back from the provider.
    static let cookieName = "greptile_mcp_signin"
    /// How long a registered client is kept, and a client metadata document before it is read again.
    static let clientLifetime: Double = 180 * 86_400
    static let documentLifetime: Double = 3_600
    /// How long a remembered consent lasts.
    static let consentLifetime: Double = 365 * 86_400

    func respond(_ request: SignInRequest) async -> SignInAnswer {
        switch (request.method, request.path) {
        case ("GET", "/.well-known/oauth-protected-resource"), ("GET", "/.well-known/oauth-protected-resource/mcp"):
            return .json(status: 200, protectedResourceMetadata, headers: [("Cache-Control", "max-age=300")])
        case ("GET", "/.well-known/oauth-authorization-server"):
            return .json(status: 200, authorizationServerMetadata, headers: [("Cache-Control", "max-age=300")])
        case ("GET", "/authorize"):
            return await authorize(request.query)
        case ("GET", "/oauth/callback"):
            return await callback(request.query)
        case ("POST", "/oauth/consent"):
            return await consent(request.form, cookie: request.cookie)
        case ("POST", "/token"):
            return await token(request.form, authorization: request.authorization)
        case ("POST", "/register"):
            return await register(request.json)
        case ("POST", "/revoke"):
            return await revoke(request.form, authorization: request.authorization)
        default:
            return .json(
                status: 405, ["error": "invalid_request", "error_description": .string("\(request.method) is not taken on \(request.path)")], headers: [])
        }
    }

    // MARK: Metadata

    var protectedResourceMetadata: JSONValue {
        [
            "resource": .string(configuration.resource), "authorization_servers": [.string(configuration.issuer)],
            "scopes_supported": .array(AuthorizationRequest.scopes.map(JSONValue.string)), "bearer_methods_supported": ["header"],
            "resource_name": "Greptile code search",
        ]
    }

    var authorizationServerMetadata: JSONValue {
        let base = configuration.publicURL
        let methods: JSONValue = .array(RegisteredClient.authMethods.map(JSONValue.string))
        return [
            "issuer": .string(configuration.issuer), "authorization_endpoint": .string(base + "/authorize"), "token_endpoint": .string(base + "/token"),
            "registration_endpoint": .string(base + "/register"), "revocation_endpoint": .string(base + "/revoke"),
            "response_types_supported": ["code"], "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"], "token_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods, "scopes_supported": .array(AuthorizationRequest.scopes.map(JSONValue.string)),
            "client_id_metadata_document_supported": true, "authorization_response_iss_parameter_supported": true,
        ]
    }

    // MARK: Clients

    /// A client by its id: registered here, or described by its metadata document (fetched,
    /// then kept an hour).
    func client(_ clientID: String) async -> Result<RegisteredClient?, RegistrationRefusal> {
        if let known = try? await grants.client(clientID) { return .success(known) }
        guard clientID.hasPrefix("https://") else { return .success(nil) }
        switch await metadataFetch.client(at: clientID) {
        case .success(let fetched):
            try? await grants.save(fetched, lifetime: Self.documentLifetime)
            return .success(fetched)
        case .failure(let refusal):
            return .failure(refusal)
        }
    }

    func register(_ body: JSONValue?) async -> SignInAnswer {
        let secret = Digests.newSecret()
        let client: RegisteredClient
        do {
            client = try ClientMetadata.register(body ?? .null, clientID: Digests.newID(), secret: secret)
        } catch {
            return .json(status: 400, ["error": .string(error.error), "error_description": .string(error.description)], headers: [])
        }
        do {
            try await grants.save(client, lifetime: Self.clientLifetime)
        } catch {
            return Self.unavailable(error)
        }
        Counter.registered.increment()
        logger.info("a client registered", metadata: ["client": "\(client.name)", "method": "\(client.authMethod)"])
        var answer: JSONObject = [
            "client_id": .string(client.clientID), "client_id_issued_at": .int(Int64(clock.wallNow)), "client_name": .string(client.name),
            "redirect_uris": .array(client.redirectURIs.map(JSONValue.string)), "token_endpoint_auth_method": .string(client.authMethod),
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "scope": .string(AuthorizationRequest.scopes.joined(separator: " ")),
        ]
        if client.authMethod != "none" {
            answer["client_secret"] = .string(secret)
            answer["client_secret_expires_at"] = 0
        }
        return .json(status: 201, .object(answer), headers: [("Cache-Control", "no-store")])
    }

    // MARK: The authorization code flow

    /// `GET /authorize`: checks the request, remembers it, and sends the person to log in.
    func authorize(_ query: [String: String]) async -> SignInAnswer {
        let request: AuthorizationRequest
        do {
            let clientID = try AuthorizationRequest.clientID(in: query)
            let known: RegisteredClient?
            switch await client(clientID) {
            case .success(let found): known = found
            case .failure(let refusal): return .page(SignInPages.error("This MCP client cannot be used: \(refusal.description)."))
            }
            request = try AuthorizationRequest.check(query, client: known, resource: configuration.resource)
        } catch {
            return refusal(error)
        }
        let verifier = Digests.newSecret()
        let login = PendingLogin(id: Digests.newID(), request: request, verifier: verifier, nonce: Digests.newSecret())
        do {
            try await grants.save(login, lifetime: configuration.loginLifetime)
            let url = try await provider.authorizationURL(state: login.id, nonce: login.nonce, challenge: Digests.challenge(of: verifier))
            return .redirect(url, headers: [("Cache-Control", "no-store")])
        } catch let error as LoginFailure {
            return .page(SignInPages.error("The identity provider cannot be used right now: \(error.message)", status: 502))
        } catch {
            return .page(SignInPages.error("Sign-in is unavailable right now; try again in a moment.", status: 503))
        }
    }

    /// `GET /oauth/callback`: the person is back from the provider. Who they are decides the
    /// rest: outside the allow list, refused; a consent remembered, a code at once; otherwise
    /// the consent page, answerable only from this browser.
    func callback(_ query: [String: String]) async -> SignInAnswer {
        guard let state = query["state"], let login = try? await grants.pending(state), login.stage == .login else {
            return .page(SignInPages.error("This sign-in link has expired or was already used. Start again from your MCP client."))
        }
        if let error = query["error"] {
            _ = try? await grants.advance(login, from: .login, to: .done)
            return clientRedirect(login.request, ["error": "access_denied", "error_description": "the identity provider said \(error.prefix(60))"])
        }
        guard let code = query["code"] else { return .page(SignInPages.error("The identity provider sent no code back. Start again from your MCP client.")) }
        let principal: String
        do {
            let identity = try await provider.identity(code: code, verifier: login.verifier, nonce: login.nonce)
            guard configuration.allow.allows(identity), let allowed = identity.principal else {
                logger.notice("a sign-in was refused: not on the allow list", metadata: ["who": "\(identity.name)"])
                Counter.refused.increment()
                _ = try? await grants.advance(login, from: .login, to: .done)
                return .page(SignInPages.error("\(identity.name) may not use this server. Ask whoever runs it to add you.", status: 403))
            }
            principal = allowed
        } catch {
            return .page(SignInPages.error("Sign-in failed at the identity provider: \(error.message)", status: 502))
        }
        do {
            if try await grants.hasConsent(principal: principal, clientID: login.request.clientID) {
                guard try await grants.advance(login, from: .login, to: .done, ["principal": .string(principal)]) else { return Self.used }
                return try await issueCode(login.request, principal: principal)
            }
            let browser = Digests.newSecret()
            let csrf = Digests.newSecret()
            guard
                try await grants.advance(
                    login, from: .login, to: .consent,
                    ["principal": .string(principal), "browser": .string(Digests.hash(browser)), "csrf": .string(Digests.hash(csrf))])
            else { return Self.used }
            guard case .success(let client?) = await client(login.request.clientID) else { return Self.used }
            var page = SignInPages.consent(client: client, principal: principal, redirectURI: login.request.redirectURI, login: login.id, csrf: csrf)
            let secure = configuration.publicURL.hasPrefix("https://") ? "; Secure" : ""
            page.headers.append(("Set-Cookie", "\(Self.cookieName)=\(browser); Path=/oauth; HttpOnly; SameSite=Lax; Max-Age=600\(secure)"))
            return .page(page)
        } catch {
            return .page(SignInPages.error("Sign-in is unavailable right now; try again in a moment.", status: 503))
        }
    }

    /// `POST /oauth/consent`: the person's answer, from the browser the consent page was shown in.
    func consent(_ form: [String: String], cookie: String?) async -> SignInAnswer {
        guard let id = form["login"], let csrf = form["csrf"], let login = try? await grants.pending(id), login.stage == .consent,
            let principal = login.principal, let fields = try? await grants.read(StorageKeys.signIn("pending", id)),
            let expectedCSRF = fields["csrf"]?.stringValue, Digests.same(Digests.hash(csrf), expectedCSRF)
        else {
            return .page(SignInPages.error("This consent form has expired or was already answered. Start again from your MCP client."))
        }
        guard let browser = Self.cookie(Self.cookieName, in: cookie), let expectedBrowser = login.browser, Digests.same(Digests.hash(browser), expectedBrowser)
        else {
            return .page(SignInPages.error("This consent form was not opened in this browser. Start again from your MCP client.", status: 403))
        }
        guard (try? await grants.advance(login, from: .consent, to: .done)) == true else { return Self.used }
        guard form["decision"] == "allow" else {
            return clientRedirect(login.request, ["error": "access_denied", "error_description": "the person did not allow it"])
        }
        do {
            try await grants.saveConsent(principal: principal, clientID: login.request.clientID, at: clock.wallNow, lifetime: Self.consentLifetime)
            return try await issueCode(login.request, principal: principal)
        } catch {
            return .page(SignInPages.error("Sign-in is unavailable right now; try again in a moment.", status: 503))
        }
    }

    private func issueCode(_ request: AuthorizationRequest, principal: String) async throws -> SignInAnswer {
        let code = Digests.newSecret()
        try await grants.saveCode(code, IssuedCode(request: request, principal: principal, issuedAt: clock.wallNow), lifetime: configuration.codeLifetime * 10)
        logger.info("signed in", metadata: ["principal": "\(principal)", "client": "\(request.clientID.prefix(80))"])
        Counter.signedIn.increment()
        return clientRedirect(request, ["code": code])
    }

    /// The client's redirect URI with `parameters`, its `state` and this issuer (RFC 9207).
    private func clientRedirect(_ request: AuthorizationRequest, _ parameters: [String: String]) -> SignInAnswer {
        let ordered = parameters.sorted { $0.key < $1.key }.map { ($0.key, Optional($0.value)) }
        return .redirect(
            AuthorizationRequest.redirect(request.redirectURI, parameters: ordered + [("state", request.state), ("iss", configuration.issuer)]),
            headers: [("Cache-Control", "no-store")])
    }

    private func refusal(_ refusal: AuthorizationRequest.Refusal) -> SignInAnswer {
        switch refusal {
        case .page(let message):
            return .page(SignInPages.error(message))
        case .redirect(let uri, let error, let description, let state):
            return .redirect(
                AuthorizationRequest.redirect(
                    uri, parameters: [("error", error), ("error_description", description), ("state", state), ("iss", configuration.issuer)]),
                headers: [("Cache-Control", "no-store")])
        }
    }

    private static let used = SignInAnswer.page(SignInPages.error("This sign-in was already completed or has expired. Start again from your MCP client."))

    static func cookie(_ name: String, in header: String?) -> String? {
        header?.split(separator: ";").lazy.map { $0.trimmingCharacters(in: .whitespaces) }
            .first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
    }

    static func unavailable(_ error: any Error) -> SignInAnswer {
        .json(status: 503, ["error": "temporarily_unavailable", "error_description": "sign-in state could not be stored; try again"], headers: [])
    }

    enum Counter {
        static let registered = Metrics.Counter(label: "worker_signin_clients_registered_total")
        static let signedIn = Metrics.Counter(label: "worker_signin_logins_total")
        static let refused = Metrics.Counter(label: "worker_signin_refused_total")

        static func declare() {
            _ = (registered, signedIn, refused)
        }
    }
}

import CurlHTTP
import Foundation
import JWTKit
import ServerRuntime
import SessionModel
import Synchronization

/// The team's identity provider, which the login itself is delegated to.
protocol LoginProvider: Sendable {
    /// Where to send the person to log in, coming back to `callback` with `state`.
    func authorizationURL(state: String, nonce: String, challenge: String) async throws(LoginFailure) -> String
    /// Who logged in, from the code the provider sent back.
    func identity(code: String, verifier: String, nonce: String) async throws(LoginFailure) -> Identity
}

/// A login that failed at or with the provider; the message is for the person.
public struct LoginFailure: Error, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// What an OpenID Connect `id_token` says, as far as sign-in reads it.
struct IDTokenClaims: JWTPayload, Equatable {
    var iss: String
    var sub: String
    var aud: AudienceClaim
    var exp: Double
    var iat: Double?
    var nonce: String?
    var email: String?
    var email_verified: BoolClaim?
    var azp: String?
    /// Entra ID's word that the address's domain is verified by its tenant (it sends no
    /// `email_verified`); an optional claim the app registration must ask for.
    var xms_edov: BoolClaim? = nil

    /// Claims are judged by `check`, with the clock as an input.
    func verify(using algorithm: some JWTAlgorithm) throws {}

    /// The identity the token proves, or why it proves none: this issuer, this client as its
    /// audience (and authorized party, when there are several), not expired, the nonce this
    /// login sent, a verified email (`email_verified`, or Entra ID's `xms_edov`).
    func check(issuer: String, clientID: String, nonce expected: String, now: Double) throws(LoginFailure) -> Identity {
        guard iss == issuer else { throw LoginFailure("the provider's token was issued by \(iss.prefix(100)), not \(issuer)") }
        guard aud.value.contains(clientID), aud.value.count == 1 || azp == clientID else {
            throw LoginFailure("the provider's token is for another client")
        }
        guard exp + 60 > now else { throw LoginFailure("the provider's token has expired; sign in again") }
        guard let nonce, Digests.same(nonce, expected) else { throw LoginFailure("the provider's token is not for this login (nonce); sign in again") }
        guard let email, email_verified?.value == true || xms_edov?.value == true else {
            throw LoginFailure("the provider did not give a verified email address (ask for the email scope and a verified address)")
        }
        return Identity(kind: .email, name: email.lowercased())
    }
}

/// Any OpenID Connect provider (Google, Okta, Entra ID, Keycloak...), found by discovery at its
/// issuer: the authorization code flow with PKCE and a nonce, the code exchanged with the
/// client's secret, the `id_token` checked against the provider's published keys.
final class OpenIDProvider: LoginProvider {
    struct Discovery: Sendable, Equatable {
        var authorizationEndpoint: String
        var tokenEndpoint: String
        var jwksURI: String
        var userinfoEndpoint: String?
    }

    let issuer: String
    let clientID: String
    let clientSecret: String
    let callback: String
    let http: ProviderHTTP
    let clock: ServerClock
    private let discovered = Mutex<(Discovery, at: Double)?>(nil)
    private let keys = JWTKeyCollection()
    private let keysLoaded = Mutex<Double?>(nil)

    init(issuer: String, clientID: String, clientSecret: String, callback: String, http: ProviderHTTP, clock: ServerClock) {
        self.issuer = issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.callback = callback
        self.http = http
        self.clock = clock
    }

    func authorizationURL(state: String, nonce: String, challenge: String) async throws(LoginFailure) -> String {
        let endpoint = try await discovery().authorizationEndpoint
        return AuthorizationRequest.redirect(
            endpoint,
            parameters: [
                ("response_type", "code"), ("client_id", clientID), ("redirect_uri", callback), ("scope", "openid email"), ("state", state),
                ("nonce", nonce), ("code_challenge", challenge), ("code_challenge_method", "S256"),
            ])
    }

    func identity(code: String, verifier: String, nonce: String) async throws(LoginFailure) -> Identity {
        let found = try await discovery()
        let answer = try await http.form(
            found.tokenEndpoint,
            [
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", callback), ("client_id", clientID),
                ("client_secret", clientSecret), ("code_verifier", verifier),
            ], what: "exchanging the login code")
        guard let idToken = answer["id_token"]?.stringValue else { throw LoginFailure("the provider answered the login without an id_token") }
        let claims = try await verified(idToken)
        do {
            return try claims.check(issuer: issuer, clientID: clientID, nonce: nonce, now: clock.wallNow)
        } catch  where claims.email == nil {
            // Some providers leave the address to userinfo.
            guard let userinfo = found.userinfoEndpoint, let access = answer["access_token"]?.stringValue else { throw error }
            let info = try await http.get(userinfo, bearer: access, what: "reading the signed-in person's address")
            var completed = claims
            completed.email = info["email"]?.stringValue
            completed.email_verified = info["email_verified"]?.boolValue.map(BoolClaim.init(value:))
            return try completed.check(issuer: issuer, clientID: clientID, nonce: nonce, now: clock.wallNow)
        }
    }

    /// The provider's endpoints, from its discovery document (kept an hour); its `issuer` must
    /// be the one configured.
    func discovery() async throws(LoginFailure) -> Discovery {
        let now = clock.wallNow
        if let (cached, at) = discovered.withLock({ $0 }), now - at < 3_600 { return cached }
        let document = try await http.get(issuer + "/.well-known/openid-configuration", bearer: nil, what: "discovering the identity provider")
        guard document["issuer"]?.stringValue == issuer else {
            throw LoginFailure(
                "the identity provider's discovery document names issuer \(document["issuer"]?.stringValue?.prefix(100) ?? "none"), not \(issuer)")
        }
        guard let authorize = document["authorization_endpoint"]?.stringValue, let token = document["token_endpoint"]?.stringValue,
            let jwks = document["jwks_uri"]?.stringValue
        else { throw LoginFailure("the identity provider's discovery document lacks its endpoints") }
        let found = Discovery(
            authorizationEndpoint: authorize, tokenEndpoint: token, jwksURI: jwks, userinfoEndpoint: document["userinfo_endpoint"]?.stringValue)
        discovered.withLock { $0 = (found, now) }
        return found
    }

    /// The token's claims once its signature is the provider's: its keys, read again once when
    /// a token is signed with one this worker has not seen (the provider rotated).
    private func verified(_ token: String) async throws(LoginFailure) -> IDTokenClaims {
        for attempt in 0..<2 {
            if attempt == 1 || keysLoaded.withLock({ $0 }) == nil { try await loadKeys() }
            if let claims = try? await keys.verify(token, as: IDTokenClaims.self) { return claims }
        }
        throw LoginFailure("the provider's id_token is not signed by the provider")
    }

    private func loadKeys() async throws(LoginFailure) {
        let now = clock.wallNow
        // At most once a minute: a forged token must not make the worker hammer the provider.
        if let at = keysLoaded.withLock({ $0 }), now - at < 60 { return }
        let jwks = try await http.raw(try await discovery().jwksURI, what: "reading the identity provider's keys")
        do {
            _ = try await keys.add(jwksJSON: String(decoding: jwks, as: UTF8.self))
        } catch {
            throw LoginFailure("the identity provider's keys could not be read: \(error)")
        }
        keysLoaded.withLock { $0 = now }
    }
}

/// The provider's HTTP: libcurl, the configured CA file, bounded answers.
struct ProviderHTTP: Sendable {
    let client: CurlClient
    let caFile: String?

    func form(_ url: String, _ pairs: [(String, String)], what: String, headers: HTTPHeaders = [:]) async throws(LoginFailure) -> JSONObject {
        var all = headers
        all.add("Content-Type", "application/x-www-form-urlencoded")
        all.add("Accept", "application/json")
        return try await json(HTTPRequest(method: .post, url: url, headers: all, body: Data(FormBody.encode(pairs).utf8), timeout: .seconds(10)), what: what)
    }

    func get(_ url: String, bearer: String?, what: String) async throws(LoginFailure) -> JSONObject {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if let bearer { headers.add("Authorization", "Bearer \(bearer)") }
        return try await json(HTTPRequest(url: url, headers: headers, timeout: .seconds(10)), what: what)
    }

    func raw(_ url: String, what: String) async throws(LoginFailure) -> Data {
        try await send(HTTPRequest(url: url, headers: ["Accept": "application/json"], timeout: .seconds(10)), what: what).body
    }

    func getList(_ url: String, bearer: String, what: String) async throws(LoginFailure) -> [JSONValue] {
        let request = HTTPRequest(url: url, headers: ["Accept": "application/json", "Authorization": "Bearer \(bearer)"], timeout: .seconds(10))
        guard case .array(let items)? = try? JSONValue.parseStrictly(try await send(request, what: what).body) else {
            throw LoginFailure("the provider's answer while \(what) is not a JSON list")
        }
        return items
    }

    private func json(_ request: HTTPRequest, what: String) async throws(LoginFailure) -> JSONObject {
        let response = try await send(request, what: what)
        guard case .object(let object)? = try? JSONValue.parseStrictly(response.body) else {
            throw LoginFailure("the provider's answer while \(what) is not JSON")
        }
        return object
    }

    private func send(_ request: HTTPRequest, what: String) async throws(LoginFailure) -> HTTPResponse {
        var request = request
        request.caFile = caFile
        request.maxResponseBytes = 1 << 20
        let response: HTTPResponse
        do {
            response = try await client.execute(request)
        } catch {
            throw LoginFailure("the identity provider could not be reached while \(what): \(error)")
        }
        guard response.status == 200 else {
            let detail = (try? JSONValue.parseStrictly(response.body))?.objectValue?["error"]?.stringValue ?? "HTTP \(response.status)"
            throw LoginFailure("the identity provider refused \(what) (\(detail.prefix(100)))")
        }
        return response
    }
}

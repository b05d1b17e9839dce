import Foundation
import JWTKit
import SessionModel
import Testing

@testable import SignIn

/// The rules of sign-in that need no network: redirect URIs, PKCE, authorization and token
/// requests, client metadata, the allow list, id_token claims, addresses, token claims.
@Suite("Sign-in's rules, without I/O")
struct SignInProtocolTests {
    static let client = RegisteredClient(
        clientID: "c1", name: "Test <client>", redirectURIs: ["http://127.0.0.1:4000/cb", "cursor://anysphere.cursor-mcp/oauth/callback"],
        authMethod: "none", secretHash: nil)
    static let resource = "https://mcp.example.com/mcp"
    static let verifier = String(repeating: "v", count: 43)

    @Test("redirect URIs: https anywhere, http to loopback only, private-use schemes; never fragments, credentials or script schemes")
    func redirectPolicy() {
        for good in [
            "https://app.example.com/cb", "http://127.0.0.1/cb", "http://localhost:8000/cb", "http://[::1]:3/x", "cursor://anysphere.cursor-mcp/oauth/callback",
        ] {
            #expect(RedirectURIPolicy.refusal(good) == nil, "\(good)")
        }
        for bad in [
            "http://example.com/cb", "https://app.example.com/cb#x", "https://user:pw@app.example.com/", "javascript:alert(1)", "data:text/html,x", "/relative",
            "file:///etc/passwd",
        ] {
            #expect(RedirectURIPolicy.refusal(bad) != nil, "\(bad)")
        }
    }

    @Test("a requested redirect matches a registered one exactly, or a loopback one on any port")
    func redirectMatching() {
        #expect(RedirectURIPolicy.matches("http://127.0.0.1:4000/cb", registered: Self.client.redirectURIs))
        #expect(RedirectURIPolicy.matches("http://127.0.0.1:51234/cb", registered: Self.client.redirectURIs), "any port for loopback")
        #expect(!RedirectURIPolicy.matches("http://127.0.0.1:51234/other", registered: Self.client.redirectURIs))
        #expect(!RedirectURIPolicy.matches("http://localhost:4000/cb", registered: Self.client.redirectURIs), "another host is another URI")
        #expect(!RedirectURIPolicy.matches("https://evil.example/cb", registered: Self.client.redirectURIs))
        #expect(RedirectURIPolicy.matches("cursor://anysphere.cursor-mcp/oauth/callback", registered: Self.client.redirectURIs))
    }

    @Test("PKCE: S256 only; a verifier matches its own challenge and nothing else")
    func pkce() {
        let challenge = Digests.challenge(of: Self.verifier)
        #expect(PKCE.isChallenge(challenge))
        #expect(PKCE.verifies(Self.verifier, challenge: challenge))
        #expect(!PKCE.verifies(String(repeating: "w", count: 43), challenge: challenge))
        #expect(!PKCE.verifies("short", challenge: Digests.challenge(of: "short")), "a verifier is 43 to 128 characters")
        // RFC 7636 appendix B.
        #expect(Digests.challenge(of: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    }

    static func query(_ changes: [String: String?] = [:]) -> [String: String] {
        var query: [String: String] = [
            "response_type": "code", "client_id": "c1", "redirect_uri": "http://127.0.0.1:4000/cb", "state": "s",
            "code_challenge": Digests.challenge(of: verifier), "code_challenge_method": "S256", "resource": resource, "scope": "mcp",
        ]
        for (key, value) in changes { query[key] = value }
        return query
    }

    @Test("an authorization request without a trustworthy client or redirect is refused on a page, never redirected")
    func refusedOnAPage() {
        #expect(throws: AuthorizationRequest.Refusal.self) { try AuthorizationRequest.check(Self.query(), client: nil, resource: Self.resource) }
        do {
            _ = try AuthorizationRequest.check(Self.query(["redirect_uri": "https://evil.example/cb"]), client: Self.client, resource: Self.resource)
            Issue.record("an unregistered redirect was accepted")
        } catch {
            guard case .page = error else {
                Issue.record("an unregistered redirect must not be redirected to: \(error)")
                return
            }
        }
    }

    @Test("other refusals go back to the client's redirect URI with the OAuth error: no PKCE, plain PKCE, another resource, an unknown scope")
    func refusedByRedirect() throws {
        let cases: [([String: String?], String)] = [
            (["code_challenge": nil], "invalid_request"), (["code_challenge_method": "plain"], "invalid_request"),
            (["resource": "https://other.example/mcp"], "invalid_target"), (["scope": "admin"], "invalid_scope"),
            (["response_type": "token"], "unsupported_response_type"),
        ]
        for (changes, expected) in cases {
            do {
                _ = try AuthorizationRequest.check(Self.query(changes), client: Self.client, resource: Self.resource)
                Issue.record("\(changes) was accepted")
            } catch {
                guard case .redirect(let uri, let code, _, let state) = error else {
                    Issue.record("\(changes): \(error)")
                    return
                }
                #expect(uri == "http://127.0.0.1:4000/cb" && code == expected && state == "s", "\(changes)")
            }
        }
        let accepted = try AuthorizationRequest.check(Self.query(["redirect_uri": "http://127.0.0.1:9/cb"]), client: Self.client, resource: Self.resource)
        #expect(accepted.redirectURI == "http://127.0.0.1:9/cb" && accepted.scope == "mcp")
        let url = AuthorizationRequest.redirect(accepted.redirectURI, parameters: [("code", "a+b c"), ("state", "s"), ("iss", "https://mcp.example.com")])
        #expect(url == "http://127.0.0.1:9/cb?code=a%2Bb%20c&state=s&iss=https://mcp.example.com")
    }

    @Test("token requests: the grant types offered, and PKCE's verifier required")
    func tokenRequests() throws {
        #expect(try TokenRequest.read(["grant_type": "refresh_token", "refresh_token": "r"]) == .refresh(token: "r", clientID: nil))
        #expect(throws: TokenRequest.Refusal.self) { try TokenRequest.read(["grant_type": "authorization_code", "code": "c"]) }
        #expect(throws: TokenRequest.Refusal.self) { try TokenRequest.read(["grant_type": "password", "username": "u"]) }
        #expect(FormBody.parse("a=1&b=x+y%2Bz&a=2&c") == ["a": "1", "b": "x y+z", "c": ""])
    }

    @Test("registration: redirect URIs by the policy, grant and response types checked, a secret unless it asked for none")
    func registration() throws {
        let registered = try ClientMetadata.register(["redirect_uris": ["http://127.0.0.1/cb"], "client_name": "CLI"], clientID: "id", secret: "sekrit")
        #expect(registered.authMethod == "client_secret_basic" && registered.secretHash == Digests.hash("sekrit"))
        let public_ = try ClientMetadata.register(
            ["redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"], clientID: "id", secret: "x")
        #expect(public_.secretHash == nil)
        for bad: JSONValue in [
            ["redirect_uris": ["http://evil.example/cb"]], ["redirect_uris": []], ["client_name": "x"],
            ["redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]],
            ["redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"],
        ] {
            #expect(throws: RegistrationRefusal.self, "\(bad)") { try ClientMetadata.register(bad, clientID: "id", secret: "x") }
        }
    }

    @Test("a client metadata document names itself, carries no secret, and authenticates with PKCE alone")
    func metadataDocument() throws {
        let url = "https://client.example/mcp.json"
        let document: JSONValue = ["client_id": .string(url), "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"]
        #expect(try ClientMetadata.document(document, url: url).isMetadataDocument)
        #expect(throws: RegistrationRefusal.self) { try ClientMetadata.document(document, url: "https://other.example/mcp.json") }
        var withSecret = document.objectValue!
        withSecret["client_secret"] = "x"
        #expect(throws: RegistrationRefusal.self) { try ClientMetadata.document(.object(withSecret), url: url) }
    }

    @Test("the allow list: addresses, @domains, GitHub organisations; principals are lower-case addresses or login@github")
    func allowList() throws {
        let list = try AllowList(parsing: "Alice@Example.com, @example.org, org:acme")
        #expect(list.allows(Identity(kind: .email, name: "alice@example.com")))
        #expect(list.allows(Identity(kind: .email, name: "bob@example.org")))
        #expect(!list.allows(Identity(kind: .email, name: "bob@example.org.evil.test")))
        #expect(!list.allows(Identity(kind: .email, name: "mallory@example.net")))
        #expect(list.allows(Identity(kind: .github, name: "octocat", organisations: ["ACME"])))
        #expect(!list.allows(Identity(kind: .github, name: "octocat", organisations: ["other"])))
        #expect(Identity(kind: .email, name: "Alice+Work@Example.com").principal == "alice+work@example.com")
        #expect(Identity(kind: .github, name: "OctoCat").principal == "octocat@github")
        #expect(Identity(kind: .email, name: "a b@example.com").principal == nil)
        #expect(throws: SignInSettingError.self) { try AllowList(parsing: " , ") }
    }

    @Test("an id_token proves an identity only from this issuer, for this client, unexpired, with its nonce and a verified address (or Entra's xms_edov)")
    func idToken() throws {
        let good = IDTokenClaims(
            iss: "https://idp.example", sub: "1", aud: AudienceClaim(value: ["worker"]), exp: 2_000, iat: 1_000, nonce: "n", email: "Alice@Example.com",
            email_verified: .init(value: true), azp: nil)
        #expect(try good.check(issuer: "https://idp.example", clientID: "worker", nonce: "n", now: 1_500) == Identity(kind: .email, name: "alice@example.com"))
        var entra = good
        entra.email_verified = nil
        entra.xms_edov = .init(value: true)
        #expect(try entra.check(issuer: "https://idp.example", clientID: "worker", nonce: "n", now: 1_500).name == "alice@example.com")
        var variants: [IDTokenClaims] = []
        var claims = good
        claims.iss = "https://evil.example"
        variants.append(claims)
        claims = good
        claims.aud = AudienceClaim(value: ["someone-else"])
        variants.append(claims)
        claims = good
        claims.exp = 1_000
        variants.append(claims)
        claims = good
        claims.nonce = "other"
        variants.append(claims)
        claims = good
        claims.email_verified = .init(value: false)
        variants.append(claims)
        claims.email_verified = nil
        variants.append(claims)
        claims.xms_edov = .init(value: false)
        variants.append(claims)
        for variant in variants {
            #expect(throws: LoginFailure.self) { try variant.check(issuer: "https://idp.example", clientID: "worker", nonce: "n", now: 1_500) }
        }
    }

    @Test("metadata documents are fetched from public addresses only: loopback, private, link-local and their IPv6 forms are refused")
    func addresses() {
        for blocked in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            #expect(!AddressPolicy.isPublic(blocked), "\(blocked)")
        }
        for open in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            #expect(AddressPolicy.isPublic(open), "\(open)")
        }
    }

    @Test("an access token is accepted for this issuer and resource until it expires")
    func accessClaims() {
        let claims = AccessClaims(
            iss: "https://mcp.example.com", sub: "alice@example.com", aud: Self.resource, exp: 2_000, iat: 1_000, jti: "j", client_id: "c1", gid: "g",
            scope: "mcp")
        #expect(AccessTokens.check(claims, now: 1_500, issuer: "https://mcp.example.com", resource: Self.resource)?.grantID == "g")
        #expect(AccessTokens.check(claims, now: 2_000, issuer: "https://mcp.example.com", resource: Self.resource) == nil, "expired")
        #expect(AccessTokens.check(claims, now: 1_500, issuer: "https://mcp.example.com", resource: "https://other.example/mcp") == nil, "another resource")
        #expect(AccessTokens.check(claims, now: 1_500, issuer: "https://other.example", resource: Self.resource) == nil, "another issuer")
    }

    @Test("revocations refuse a revoked grant's tokens, and a removed principal's tokens issued before the removal")
    func revocationView() {
        let view = Revocations.View.reading([
            HostAPI.SessionSummary(
                id: "oauth:revoked:grant:g1", principal: nil, metadata: ["at": 5], createdAt: 5, lastUpdated: 5, messageCount: 0, expiresAfter: 10),
            HostAPI.SessionSummary(
                id: "oauth:revoked:principal:bob@example.com", principal: nil, metadata: ["at": 100], createdAt: 100, lastUpdated: 100, messageCount: 0,
                expiresAfter: 10),
        ])
        #expect(view.refuses(VerifiedToken(principal: "alice@example.com", grantID: "g1", clientID: "c", issuedAt: 50, expiresAt: 1_000)))
        #expect(!view.refuses(VerifiedToken(principal: "alice@example.com", grantID: "g2", clientID: "c", issuedAt: 50, expiresAt: 1_000)))
        #expect(view.refuses(VerifiedToken(principal: "bob@example.com", grantID: "g3", clientID: "c", issuedAt: 99, expiresAt: 1_000)))
        #expect(
            !view.refuses(VerifiedToken(principal: "bob@example.com", grantID: "g4", clientID: "c", issuedAt: 101, expiresAt: 1_000)), "signed in again after")
    }

    @Test("the consent page escapes what a client names, and may post only here and redirect only to the client")
    func consentPage() {
        let page = SignInPages.consent(client: Self.client, principal: "alice@example.com", redirectURI: "http://127.0.0.1:4000/cb", login: "l", csrf: "c")
        #expect(page.html.contains("Test &lt;client&gt;") && !page.html.contains("<client>"))
        #expect(page.html.contains(#"name="decision" value="allow""#))
        let csp = page.headers.first { $0.0 == "Content-Security-Policy" }?.1 ?? ""
        #expect(csp.contains("default-src 'none'") && csp.contains("form-action 'self' http://127.0.0.1:4000") && csp.contains("frame-ancestors 'none'"))
        #expect(!page.html.contains("<script") && !page.html.contains("src="))
    }
}

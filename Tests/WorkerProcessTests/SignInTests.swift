import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

/// Sign-in with the team's identity provider, end to end: a real OpenID Connect provider
/// (django-oauth-toolkit) or GitHub's stand-in, two workers, one host, the official MCP
/// Python SDK's OAuth client, and every refusal the authorization server owes.
@Suite("Sign-in: OAuth 2.1 with the team's identity provider", .serialized)
struct SignInTests {
    static let verifier = String(repeating: "verifier-0123456789-", count: 3)

    @Test("the official client signs in by a client metadata document and by dynamic registration (public and confidential), and calls tools as its person")
    func sdkSignsIn() async throws {
        let stack = try await SignInStack.start()
        let cimd = try await stack.sdk(["--cimd-url", stack.documents.base + "/client.json"])
        #expect(cimd["ok"] as? Bool == true, "\(cimd)")
        #expect(cimd["client_id"] as? String == stack.documents.base + "/client.json", "the client's id is its document's URL")
        #expect(cimd["consent_shown"] as? Bool == true, "a person consents to each client once")
        for method in ["none", "client_secret_basic"] {
            let registered = try await stack.sdk(["--auth-method", method])
            #expect(registered["ok"] as? Bool == true, "\(method): \(registered)")
        }
        // The conversation belongs to the person: the host record is under alice's address.
        let stored = try await stack.host.client().send(.get, "/sessions/conv:alice@example.com:signed-in/history").decode(HostAPI.History.self)
        #expect(stored.data.filter { $0.role == .user }.count == 3)
        // A second sign-in of the same client and person: the consent is remembered.
        let again = try await stack.sdk(["--cimd-url", stack.documents.base + "/client.json"])
        #expect(again["ok"] as? Bool == true && again["consent_shown"] as? Bool == false, "\(again)")
        await stack.stop()
    }

    @Test("authorization requests a server must refuse: unknown client, unregistered redirect (no redirect to it), no PKCE, plain PKCE, another resource")
    func authorizeRefusals() async throws {
        let stack = try await SignInStack.start()
        let (client, _) = try await stack.register()
        let noRedirect = CurlClient()
        func get(_ url: String) async throws -> HTTPResponse { try await noRedirect.execute(HTTPRequest(url: url)) }

        let unknown = try await get(stack.authorizeURL(client: "nobody-registered-this", verifier: Self.verifier))
        #expect(unknown.status == 400 && unknown.headers["Location"] == nil && unknown.text.contains("not registered"))
        let stranger = try await get(stack.authorizeURL(client: client, verifier: Self.verifier, extra: ["redirect_uri": "https://evil.example/steal"]))
        #expect(stranger.status == 400, "\(stranger.text)")
        #expect(stranger.headers["Location"] == nil, "never a redirect to an unregistered URI")
        for (extra, error) in [
            (["code_challenge": nil], "invalid_request"), (["code_challenge_method": "plain"], "invalid_request"),
            (["resource": "https://other.example/mcp"], "invalid_target"),
        ] as [([String: String?], String)] {
            let refused = try await get(stack.authorizeURL(client: client, verifier: Self.verifier, extra: extra))
            #expect(refused.status == 302, "\(extra): \(refused.text)")
            let location = refused.headers["Location"] ?? ""
            #expect(
                location.hasPrefix(SignInStack.clientRedirect) && location.contains("error=\(error)") && location.contains("state=test-state"), "\(location)")
        }
        // A loopback redirect on another port is the same redirect (RFC 8252): accepted.
        let otherPort = try await get(stack.authorizeURL(client: client, verifier: Self.verifier, redirect: "http://127.0.0.1:51999/callback"))
        #expect(otherPort.status == 302 && (otherPort.headers["Location"] ?? "").hasPrefix(stack.provider!.issuer), "on to the provider")
        await stack.stop()
    }

    @Test("client metadata documents: a private address refused unless allowed; an oversized, a slow and a misnamed document refused")
    func metadataDocumentRefusals() async throws {
        let stack = try await SignInStack.start()
        let curl = CurlClient()
        func authorize(_ document: String, at worker: Int) async throws -> HTTPResponse {
            let url = stack.authorizeURL(client: stack.documents.base + document, verifier: Self.verifier)
                .replacingOccurrences(of: stack.publicURL, with: stack.workers[worker].base)
            return try await curl.execute(HTTPRequest(url: url, timeout: .seconds(30)))
        }
        let privateAddress = try await authorize("/client.json", at: 1)
        #expect(privateAddress.status == 400 && privateAddress.text.contains("private or loopback"), "\(privateAddress.text)")
        let allowed = try await authorize("/client.json", at: 0)
        #expect(allowed.status == 302, "the worker allowed to fetch from loopback takes it: \(allowed.text)")
        for (document, reason) in [("/big.json", "larger than"), ("/slow.json", "could not be fetched"), ("/stranger.json", "not its own URL")] {
            let refused = try await authorize(document, at: 0)
            #expect(refused.status == 400 && refused.text.contains(reason), "\(document): \(refused.text)")
        }
        await stack.stop()
    }

    @Test("codes: PKCE checked, used once; a code used twice revokes what it granted, on this worker at once and on the other within a poll")
    func codes() async throws {
        let stack = try await SignInStack.start()
        let (client, _) = try await stack.register()
        let first = try await stack.code(client: client, verifier: Self.verifier)
        let wrong = try await stack.token(
            ["grant_type": "authorization_code", "code": first, "client_id": client, "code_verifier": String(repeating: "x", count: 43)])
        #expect(wrong.status == 400 && wrong.object["error"] as? String == "invalid_grant", "\(wrong.text)")

        let code = try await stack.code(client: client, verifier: Self.verifier)
        let form = [
            "grant_type": "authorization_code", "code": code, "client_id": client, "code_verifier": Self.verifier, "redirect_uri": SignInStack.clientRedirect,
        ]
        let tokens = try await stack.token(form)
        #expect(tokens.status == 200, "\(tokens.text)")
        let access = try #require(tokens.object["access_token"] as? String)
        #expect(try await stack.toolStatus(access, at: 1) == 200)
        let replayed = try await stack.token(form, at: 1)
        #expect(replayed.status == 400 && (replayed.object["error_description"] as? String ?? "").contains("already used"), "\(replayed.text)")
        #expect(try await stack.toolStatus(access, at: 1) == 401, "the worker that saw the replay refuses the tokens at once")
        try await eventually("the other worker refuses them within a revocation poll", timeout: .seconds(40)) {
            try await stack.toolStatus(access, at: 0) == 401
        }
        await stack.stop()
    }

    @Test("refresh tokens rotate on any worker; a rotated one used again revokes the whole grant; revocation (RFC 7009) ends a grant")
    func refreshRotation() async throws {
        let stack = try await SignInStack.start()
        let (client, secret) = try await stack.register(public: false)
        let code = try await stack.code(client: client, verifier: Self.verifier)
        let credentials = ["client_id": client, "client_secret": secret ?? ""]
        let issued = try await stack.token(["grant_type": "authorization_code", "code": code, "code_verifier": Self.verifier].merging(credentials) { $1 })
        let first = try #require(issued.object["refresh_token"] as? String, "\(issued.text)")
        let onOther = try await stack.token(["grant_type": "refresh_token", "refresh_token": first].merging(credentials) { $1 }, at: 1)
        #expect(onOther.status == 200, "a refresh works on the other worker: \(onOther.text)")
        let second = try #require(onOther.object["refresh_token"] as? String)
        #expect(second != first)
        let noSecret = try await stack.token(["grant_type": "refresh_token", "refresh_token": second, "client_id": client])
        #expect(noSecret.status == 401 && noSecret.object["error"] as? String == "invalid_client", "a confidential client must authenticate")
        let third = try await stack.token(["grant_type": "refresh_token", "refresh_token": second].merging(credentials) { $1 })
        #expect(third.status == 200)
        let access = try #require(third.object["access_token"] as? String)
        let reused = try await stack.token(["grant_type": "refresh_token", "refresh_token": first].merging(credentials) { $1 }, at: 1)
        #expect(reused.status == 400 && (reused.object["error_description"] as? String ?? "").contains("revoked"), "\(reused.text)")
        let latest = try #require(third.object["refresh_token"] as? String)
        let afterReuse = try await stack.token(["grant_type": "refresh_token", "refresh_token": latest].merging(credentials) { $1 })
        #expect(afterReuse.status == 400, "the whole grant is revoked, its newest refresh token too")
        #expect(try await stack.toolStatus(access, at: 1) == 401)

        // A fresh grant, revoked by its client.
        let again = try await stack.code(client: client, verifier: Self.verifier)
        let granted = try await stack.token(["grant_type": "authorization_code", "code": again, "code_verifier": Self.verifier].merging(credentials) { $1 })
        let refresh = try #require(granted.object["refresh_token"] as? String)
        let revokeBody = "token=\(refresh)&client_id=\(client)&client_secret=\(SignInStack.formEncoded(secret ?? ""))"
        let revoked = try await stack.client(1).send(
            .post, "/revoke", body: Data(revokeBody.utf8), headers: ["Content-Type": "application/x-www-form-urlencoded"])
        #expect(revoked.status == 200)
        let gone = try await stack.token(["grant_type": "refresh_token", "refresh_token": refresh].merging(credentials) { $1 })
        #expect(gone.status == 400, "\(gone.text)")
        await stack.stop()
    }

    @Test("access tokens: expired, forged, for another resource or issued by the provider itself are refused; one this server issued is taken")
    func tokenRefusals() async throws {
        let stack = try await SignInStack.start(accessTokenLifetime: 5)
        let (client, _) = try await stack.register()
        let code = try await stack.code(client: client, verifier: Self.verifier)
        let tokens = try await stack.token(["grant_type": "authorization_code", "code": code, "client_id": client, "code_verifier": Self.verifier])
        let access = try #require(tokens.object["access_token"] as? String, "\(tokens.text)")
        #expect(try await stack.toolStatus(access, at: 1) == 200)
        let parts = access.split(separator: ".").map(String.init)
        let forged = parts[0] + "." + parts[1] + "." + String(parts[2].reversed())
        #expect(try await stack.toolStatus(forged, at: 0) == 401, "a changed signature")
        let now = Date().timeIntervalSince1970
        let claims: [String: Any] = [
            "iss": stack.publicURL, "sub": "alice@example.com", "exp": now + 600, "iat": now, "jti": "t", "client_id": client, "gid": "minted",
            "scope": "mcp",
        ]
        #expect(
            try await stack.toolStatus(try await stack.mint(claims.merging(["aud": stack.publicURL + "/mcp"]) { $1 }), at: 0) == 200,
            "the test mints as the server does")
        #expect(
            try await stack.toolStatus(try await stack.mint(claims.merging(["aud": "https://other.example/mcp"]) { $1 }), at: 0) == 401, "another resource's")
        #expect(
            try await stack.toolStatus(try await stack.mint(claims.merging(["aud": stack.publicURL + "/mcp", "iss": "https://other.example"]) { $1 }), at: 0)
                == 401)
        // The provider's own token is not this server's: no token passes through.
        let providerToken = try await stack.mint([:]).replacingOccurrences(of: ".", with: "-")
        #expect(try await stack.toolStatus(providerToken, at: 0) == 401)
        try await Task.sleep(for: .seconds(6))
        #expect(try await stack.toolStatus(access, at: 0) == 401, "expired")
        await stack.stop()
    }

    @Test("people the provider vouches for but the server does not: outside login_allow, or an unverified address")
    func peopleRefused() async throws {
        let stack = try await SignInStack.start(allow: "alice@example.com,@example.com")
        let (client, _) = try await stack.register()
        let mallory = try await stack.walk(stack.authorizeURL(client: client, verifier: Self.verifier), user: "mallory@evil.test")
        #expect(mallory["redirect"] is NSNull && (mallory["stopped"] as? String ?? "").contains("HTTP 403"), "\(mallory)")
        #expect((mallory["stopped"] as? String ?? "").contains("may not use this server"))
        let carol = try await stack.walk(stack.authorizeURL(client: client, verifier: Self.verifier), user: "carol@example.com")
        #expect((carol["stopped"] as? String ?? "").contains("verified"), "\(carol)")
        let denied = try await stack.walk(stack.authorizeURL(client: client, verifier: Self.verifier), decision: "deny")
        #expect((denied["redirect"] as? [String: String])?["error"] == "access_denied", "\(denied)")
        await stack.stop()
    }

    @Test("deleting a person's data signs them out on every worker within a poll: their tokens are refused, their grants gone")
    func erasureSignsOut() async throws {
        let stack = try await SignInStack.start()
        let (client, _) = try await stack.register()
        let code = try await stack.code(client: client, verifier: Self.verifier)
        let tokens = try await stack.token(["grant_type": "authorization_code", "code": code, "client_id": client, "code_verifier": Self.verifier])
        let access = try #require(tokens.object["access_token"] as? String)
        let refresh = try #require(tokens.object["refresh_token"] as? String)
        #expect(try await stack.toolStatus(access, at: 1) == 200)
        let erased = try await stack.client(0).send(
            .delete, "/admin/principals/alice@example.com", headers: ["Authorization": "Bearer \(SignInStack.adminKey)"])
        #expect(erased.status == 200, "\(erased.text)")
        #expect(try await stack.toolStatus(access, at: 0) == 401, "at once on the worker that erased")
        try await eventually("the other worker signs alice out within a revocation poll", timeout: .seconds(40)) {
            try await stack.toolStatus(access, at: 1) == 401
        }
        #expect(try await stack.token(["grant_type": "refresh_token", "refresh_token": refresh, "client_id": client], at: 1).status == 400)
        await stack.stop()
    }

    @Test("GitHub's flow against its stand-in: the person is login@github, members of an allowed organisation sign in, others do not")
    func github() async throws {
        let stack = try await SignInStack.start(github: true, allow: "org:acme")
        let report = try await stack.sdk([])
        #expect(report["ok"] as? Bool == true, "\(report)")
        let stored = try await stack.host.client().send(.get, "/sessions/conv:octocat@github:signed-in/history").decode(HostAPI.History.self)
        #expect(stored.data.count == 2, "the conversation is octocat@github's")
        let exchange = try await stack.standIn.requests(to: "/github-web/login/oauth/access_token")
        #expect(exchange.count == 1 && (exchange[0]["body"] as? String ?? "").contains("code_verifier="), "PKCE on GitHub's leg too")
        try await stack.standIn.control(["github_oauth": ["user": ["login": "outsider", "orgs": ["other"]]]])
        let (client, _) = try await stack.register()
        let outsider = try await stack.walk(stack.authorizeURL(client: client, verifier: Self.verifier))
        #expect((outsider["stopped"] as? String ?? "").contains("may not use this server"), "\(outsider)")
        await stack.stop()
    }
}

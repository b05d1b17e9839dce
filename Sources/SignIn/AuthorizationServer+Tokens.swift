import Foundation
import Logging
import ServerRuntime
import SessionClient
import SessionModel

/// The token endpoint and revocation: codes exchanged once, refresh tokens rotated at each use
/// (a rotated one presented again revokes the whole grant), and grants revoked on request.
extension AuthorizationServer {
    /// `POST /token`.
    func token(_ form: [String: String], authorization: String?) async -> SignInAnswer {
        do {
            let request = try TokenRequest.read(form)
            if let resource = form["resource"], resource != configuration.resource, resource != configuration.resource + "/" {
                throw TokenRequest.Refusal("invalid_target", "this server issues tokens for \(configuration.resource) only")
            }
            switch request {
            case .authorizationCode(let code, let redirect, let verifier, let clientID):
                let client = try await authenticate(clientID, form: form, authorization: authorization)
                return try await exchange(code: code, redirect: redirect, verifier: verifier, client: client)
            case .refresh(let token, let clientID):
                let client = try await authenticate(clientID, form: form, authorization: authorization)
                return try await refresh(token, client: client)
            }
        } catch let refusal as TokenRequest.Refusal {
            var headers = [("Cache-Control", "no-store")]
            if refusal.status == 401 { headers.append(("WWW-Authenticate", "Basic realm=\"greptile-mcp\"")) }
            return .json(status: refusal.status, ["error": .string(refusal.error), "error_description": .string(refusal.description)], headers: headers)
        } catch {
            return Self.unavailable(error)
        }
    }

    private func exchange(code: String, redirect: String?, verifier: String, client: RegisteredClient) async throws -> SignInAnswer {
        let now = clock.wallNow
        switch try await grants.takeCode(code, at: now) {
        case .unknown:
            throw TokenRequest.Refusal("invalid_grant", "the authorization code is unknown or expired")
        case .reused(let grantID):
            // A code used twice was stolen or replayed: what it granted is withdrawn.
            if let grantID, let grant = try await grants.grant(grantID) { try await revoke(grant) }
            throw TokenRequest.Refusal("invalid_grant", "the authorization code was already used; the tokens issued with it are revoked")
        case .taken(let issued):
            guard issued.request.clientID == client.clientID else { throw TokenRequest.Refusal("invalid_grant", "the code was issued to another client") }
            guard now - issued.issuedAt <= configuration.codeLifetime else { throw TokenRequest.Refusal("invalid_grant", "the authorization code has expired") }
            guard redirect == nil || redirect == issued.request.redirectURI else {
                throw TokenRequest.Refusal("invalid_grant", "redirect_uri is not the one the code was issued for")
            }
            guard PKCE.verifies(verifier, challenge: issued.request.codeChallenge) else {
                throw TokenRequest.Refusal("invalid_grant", "code_verifier does not match the code_challenge")
            }
            guard configuration.allow.stillAllows(principal: issued.principal) else {
                throw TokenRequest.Refusal("invalid_grant", "\(issued.principal) may no longer use this server")
            }
            let refresh = Digests.newSecret()
            let grant = Grant(
                id: Digests.newID(), principal: issued.principal, clientID: client.clientID, scope: issued.request.scope,
                resource: issued.request.resource, refreshHash: Digests.hash(refresh))
            try await grants.create(grant, refresh: refresh, lifetime: configuration.refreshTokenLifetime)
            await grants.noteGrant(grant.id, ofCode: code)
            return try await tokens(for: grant, refresh: refresh)
        }
    }

    private func refresh(_ token: String, client: RegisteredClient) async throws -> SignInAnswer {
        guard let grantID = try await grants.grantID(ofRefresh: token), let grant = try await grants.grant(grantID) else {
            throw TokenRequest.Refusal("invalid_grant", "the refresh token is unknown, expired or revoked")
        }
        guard !grant.revoked else { throw TokenRequest.Refusal("invalid_grant", "the grant was revoked; sign in again") }
        guard grant.clientID == client.clientID else { throw TokenRequest.Refusal("invalid_grant", "the refresh token was issued to another client") }
        guard Digests.same(Digests.hash(token), grant.refreshHash) else {
            try await revoke(grant)
            logger.warning("a rotated refresh token was used again; its grant is revoked", metadata: ["principal": "\(grant.principal)"])
            throw TokenRequest.Refusal("invalid_grant", "the refresh token was already used; the grant is revoked, sign in again")
        }
        guard configuration.allow.stillAllows(principal: grant.principal) else {
            throw TokenRequest.Refusal("invalid_grant", "\(grant.principal) may no longer use this server")
        }
        let next = Digests.newSecret()
        guard try await grants.rotate(grant, from: token, to: next, lifetime: configuration.refreshTokenLifetime) else {
            // Another exchange of the same token won the race: this one is the reuse.
            try await revoke(grant)
            throw TokenRequest.Refusal("invalid_grant", "the refresh token was already used; the grant is revoked, sign in again")
        }
        return try await tokens(for: grant, refresh: next)
    }

    private func tokens(for grant: Grant, refresh: String) async throws -> SignInAnswer {
        let (access, expiresIn) = try await tokens.issue(for: grant, now: clock.wallNow)
        return .json(
            status: 200,
            [
                "access_token": .string(access), "token_type": "Bearer", "expires_in": .int(Int64(expiresIn)), "refresh_token": .string(refresh),
                "scope": .string(grant.scope),
            ], headers: [("Cache-Control", "no-store"), ("Pragma", "no-cache")])
    }

    /// Revokes a grant here at once, and on every worker within a revocation poll.
    func revoke(_ grant: Grant) async throws {
        try await grants.revoke(grant: grant, at: clock.wallNow, markerLifetime: configuration.accessTokenLifetime + 300)
        revocations.note(grant: grant.id)
    }

    /// `POST /revoke` (RFC 7009): a refresh or access token's grant revoked. Answered 200 for a
    /// token that is unknown too (the client cannot learn which tokens exist).
    func revoke(_ form: [String: String], authorization: String?) async -> SignInAnswer {
        do {
            guard let token = form["token"], !token.isEmpty else { throw TokenRequest.Refusal("invalid_request", "token is required") }
            let client = try await authenticate(form["client_id"], form: form, authorization: authorization)
            let grantID: String? =
                if token.split(separator: ".").count == 3 { await tokens.unverifiedGrant(token) } else { try await grants.grantID(ofRefresh: token) }
            if let grantID, let grant = try await grants.grant(grantID), grant.clientID == client.clientID {
                try await revoke(grant)
                logger.info("a grant was revoked by its client", metadata: ["principal": "\(grant.principal)"])
            }
            return .json(status: 200, [:], headers: [("Cache-Control", "no-store")])
        } catch let refusal as TokenRequest.Refusal {
            return .json(status: refusal.status, ["error": .string(refusal.error), "error_description": .string(refusal.description)], headers: [])
        } catch {
            return Self.unavailable(error)
        }
    }

    /// The client making a token request: a public client by its `client_id`, a confidential one
    /// by its secret (HTTP Basic, or `client_secret` in the form).
    func authenticate(_ formClientID: String?, form: [String: String], authorization: String?) async throws -> RegisteredClient {
        var clientID = formClientID
        var secret = form["client_secret"]
        if let basic = Self.basicCredentials(authorization) {
            guard formClientID == nil || formClientID == basic.id else { throw TokenRequest.Refusal("invalid_client", "two different client ids were sent") }
            clientID = basic.id
            secret = basic.secret
        }
        guard let clientID, !clientID.isEmpty else { throw TokenRequest.Refusal("invalid_client", "client_id is required") }
        guard case .success(let found?) = await client(clientID) else {
            throw TokenRequest.Refusal("invalid_client", "the client is unknown to this server; register again")
        }
        if let expected = found.secretHash {
            guard let secret, Digests.same(Digests.hash(secret), expected) else {
                throw TokenRequest.Refusal("invalid_client", "the client's secret is missing or wrong")
            }
        }
        return found
    }

    /// `Basic base64(id:secret)`, each part form-decoded (RFC 6749 §2.3.1).
    static func basicCredentials(_ header: String?) -> (id: String, secret: String)? {
        guard let header, header.count > 6, header.prefix(6).lowercased() == "basic ",
            let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        let id = String(text[..<colon]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        let secret = String(text[text.index(after: colon)...]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        guard let id, let secret else { return nil }
        return (id, secret)
    }
}

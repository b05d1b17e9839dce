import Foundation
import JWTKit
import Logging
import SessionClient
import SessionModel
import Synchronization

/// What an access token says (a JWT signed with HS256 by a key every worker shares).
struct AccessClaims: JWTPayload, Equatable {
    var iss: String
    /// The principal.
    var sub: String
    /// The resource it is for (RFC 8707): this server's MCP endpoint.
    var aud: String
    var exp: Double
    var iat: Double
    var jti: String
    var client_id: String
    /// The grant it was issued under: revoking the grant revokes it.
    var gid: String
    var scope: String

    /// Claims are judged by `AccessTokens.check`, with the clock as an input.
    func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// A token a worker accepted: who, under which grant, issued when.
public struct VerifiedToken: Sendable, Equatable {
    public var principal: String
    public var grantID: String
    public var clientID: String
    public var issuedAt: Double
    public var expiresAt: Double
}

/// Access tokens every worker can check without a host round trip: short-lived JWTs signed
/// with a key kept in the hosts (`oauth:keys`), which each worker loads and which is replaced
/// daily; older keys stay for as long as tokens they signed may live. What a worker refuses
/// besides (revoked grants, removed principals) is `Revocations`' to know.
public final class AccessTokens: Sendable {
    struct StoredKey: Sendable, Equatable {
        var kid: String
        var secret: String
        var created: Double
    }

    let grants: GrantStore
    let issuer: String
    let resource: String
    let lifetime: Double
    /// How long a key signs before a new one replaces it.
    let rotation: Double
    let logger: Logger
    private let collection = JWTKeyCollection()
    private let keys = Mutex<[StoredKey]>([])
    private static let record = StorageKeys.signIn("keys")

    init(grants: GrantStore, issuer: String, resource: String, lifetime: Double, rotation: Double = 86_400, logger: Logger) {
        self.grants = grants
        self.issuer = issuer
        self.resource = resource
        self.lifetime = lifetime
        self.rotation = rotation
        self.logger = logger
    }

    /// Reads the keys from the hosts, making the first one, or a new one once the newest is
    /// older than `rotation`; of workers doing so at once, one writes and the others read it.
    func refresh(now: Double) async throws(SessionError) {
        for _ in 0..<3 {
            let stored = Self.decode(try await grants.read(Self.record))
            if let newest = stored.last, now - newest.created < rotation {
                await use(stored)
                return
            }
            // Kept: every key that signed a token still alive, and the new one.
            let new = StoredKey(kid: Digests.newID(), secret: Digests.newSecret(), created: now)
            let kept = stored.filter { now - $0.created < rotation + lifetime + 300 } + [new]
            do {
                try await grants.write(
                    Self.record, ["keys": Self.encode(kept), "newest": .string(new.kid)], lifetime: 0,
                    expect: ["newest": stored.last.map { .string($0.kid) } ?? .null])
            } catch  where error.apiError?.code == .preconditionFailed {
                continue  // another worker made one meanwhile: read it
            }
            await use(kept)
            logger.notice(stored.isEmpty ? "made the first token signing key" : "rotated the token signing key")
            return
        }
        throw .unavailable("the token signing keys kept changing while this worker read them")
    }

    private func use(_ stored: [StoredKey]) async {
        let known = keys.withLock { $0.map(\.kid) }
        for key in stored where !known.contains(key.kid) {
            await collection.add(hmac: HMACKey(from: Data(key.secret.utf8)), digestAlgorithm: .sha256, kid: JWKIdentifier(string: key.kid))
        }
        for kid in known where !stored.contains(where: { $0.kid == kid }) {
            _ = await collection.remove(kid: JWKIdentifier(string: kid))
        }
        keys.withLock { $0 = stored }
    }

    /// Whether the keys were loaded.
    var ready: Bool { keys.withLock { !$0.isEmpty } }

    /// A new access token for `grant`, valid for `lifetime` from `now`.
    func issue(for grant: Grant, now: Double) async throws -> (token: String, expiresIn: Int) {
        guard let kid = keys.withLock({ $0.last?.kid }) else { throw SessionError.unavailable("no token signing key is loaded yet") }
        let claims = AccessClaims(
            iss: issuer, sub: grant.principal, aud: resource, exp: (now + lifetime).rounded(.down), iat: now.rounded(.down),
            jti: Digests.newID(), client_id: grant.clientID, gid: grant.id, scope: grant.scope)
        return (try await collection.sign(claims, kid: JWKIdentifier(string: kid)), Int(lifetime))
    }

    /// The token's grant and principal when its signature is one of ours and its claims hold
    /// at `now`; nil otherwise (forged, expired, for another resource or issuer).
    func verify(_ token: String, now: Double) async -> VerifiedToken? {
        guard token.utf8.count < 4_096, let claims = try? await collection.verify(token, as: AccessClaims.self) else { return nil }
        return Self.check(claims, now: now, issuer: issuer, resource: resource)
    }

    /// The claims' rules: this issuer, this resource, not expired, not issued in the future.
    static func check(_ claims: AccessClaims, now: Double, issuer: String, resource: String) -> VerifiedToken? {
        guard claims.iss == issuer, claims.aud == resource, claims.exp > now, claims.iat <= now + 60 else { return nil }
        return VerifiedToken(principal: claims.sub, grantID: claims.gid, clientID: claims.client_id, issuedAt: claims.iat, expiresAt: claims.exp)
    }

    /// The grant an access token names, without checking anything else (revocation of a token
    /// that may have expired).
    func unverifiedGrant(_ token: String) async -> String? {
        (try? await collection.verify(token, as: AccessClaims.self))?.gid
    }

    // MARK: The record

    static func decode(_ fields: JSONObject?) -> [StoredKey] {
        (fields?["keys"]?.arrayValue ?? []).compactMap { item in
            guard let object = item.objectValue, let kid = object["kid"]?.stringValue, let secret = object["secret"]?.stringValue,
                let created = object["created"]?.numberValue
            else { return nil }
            return StoredKey(kid: kid, secret: secret, created: created)
        }
    }

    static func encode(_ keys: [StoredKey]) -> JSONValue {
        .array(keys.map { ["kid": .string($0.kid), "secret": .string($0.secret), "created": .double($0.created)] })
    }
}

import Foundation
import SessionClient
import SessionModel

/// The state of sign-in, kept in the durable hosts like any record (owned by the ring, written
/// through the same fenced commit, expired by the same sweep), so any worker serves any step
/// and a restart signs nobody out. Codes, refresh tokens and client secrets are kept as their
/// SHA-256 only. A step that must happen once (a code exchanged, a refresh token rotated, a
/// login finished) is a write that expects the record as it was read: of two workers racing,
/// one wins (`SessionUpdate.expect`).
///
/// Records (`StorageKeys.signIn`): `client:<id>` (registered clients), `pending:<id>` (a
/// login under way), `code:<hash>`, `grant:<id>` (a person's grant to a client: its current
/// refresh token's hash), `refresh:<hash>` (which grant a refresh token belongs to, kept after
/// rotation to recognise reuse), `consent:<principal>:<client>`, `revoked:grant:<id>` and
/// `revoked:principal:<p>` (what workers refuse), `keys` (the token signing keys).
public struct GrantStore: Sendable {
    let store: any SessionManager

    public init(store: any SessionManager) {
        self.store = store
    }

    // MARK: Reading and writing records

    func read(_ id: String) async throws(SessionError) -> JSONObject? {
        try await store.record(id)?.metadata
    }

    func write(
        _ id: String, _ metadata: JSONObject, principal: String? = nil, lifetime: Double, mustExist: Bool = false, expect: JSONObject? = nil
    ) async throws(SessionError) {
        try await store.write(
            id, SessionUpdate(.updateMetadata(metadata), principal: principal, expiresAfter: lifetime, mustExist: mustExist, expect: expect))
    }

    /// Changes a record only if it still holds `expect`; false when another writer got there first.
    func claim(_ id: String, _ metadata: JSONObject, expect: JSONObject, lifetime: Double? = nil) async throws(SessionError) -> Bool {
        do {
            try await store.write(id, SessionUpdate(.updateMetadata(metadata), expiresAfter: lifetime, mustExist: true, expect: expect))
            return true
        } catch  where error.apiError?.code == .preconditionFailed || error.apiError?.code == .sessionNotFound {
            return false
        }
    }

    // MARK: Clients

    static func clientRecord(_ clientID: String) -> String {
        clientID.hasPrefix("https://")
            ? StorageKeys.signIn("client-url", Digests.hash(clientID)) : StorageKeys.signIn("client", clientID)
    }

    func client(_ clientID: String) async throws(SessionError) -> RegisteredClient? {
        guard clientID.utf8.count <= 2_000, clientID.hasPrefix("https://") || SessionID.isAllowedID(clientID) else { return nil }
        guard let stored = try await read(Self.clientRecord(clientID))?["client"] else { return nil }
        return try? JSONCoding.decoder.decode(RegisteredClient.self, from: Data(stored.jsonText().utf8))
    }

    func save(_ client: RegisteredClient, lifetime: Double) async throws(SessionError) {
        let encoded = (try? JSONCoding.encoder.encode(client)).flatMap(JSONValue.parse) ?? .null
        try await write(Self.clientRecord(client.clientID), ["client": encoded], lifetime: lifetime)
    }

    // MARK: Logins under way

    func pending(_ id: String) async throws(SessionError) -> PendingLogin? {
        guard SessionID.isAllowedID(id), let fields = try await read(StorageKeys.signIn("pending", id)), var login = PendingLogin(fields) else {
            return nil
        }
        login.id = id
        return login
    }

    func save(_ login: PendingLogin, lifetime: Double) async throws(SessionError) {
        try await write(StorageKeys.signIn("pending", login.id), login.fields, lifetime: lifetime)
    }

    /// Moves a login from `stage` to `next` with `changes`, once: false when it was not there any more.
    func advance(
        _ login: PendingLogin, from stage: PendingLogin.Stage, to next: PendingLogin.Stage, _ changes: JSONObject = [:]
    ) async throws(SessionError)
        -> Bool
    {
        var metadata = changes
        metadata["stage"] = .string(next.rawValue)
        return try await claim(StorageKeys.signIn("pending", login.id), metadata, expect: ["stage": .string(stage.rawValue)])
    }

    // MARK: Codes

    func saveCode(_ code: String, _ issued: IssuedCode, lifetime: Double) async throws(SessionError) {
        try await write(StorageKeys.signIn("code", Digests.hash(code)), issued.fields, principal: issued.principal, lifetime: lifetime)
    }

    /// The code's record, taken for this exchange: nil when unknown; `.reused` when it was
    /// exchanged before (its grant must be revoked).
    func takeCode(_ code: String, at now: Double) async throws(SessionError) -> CodeTaking {
        let id = StorageKeys.signIn("code", Digests.hash(code))
        guard let fields = try await read(id), let issued = IssuedCode(fields) else { return .unknown }
        if fields["used"] != nil && fields["used"] != .null { return .reused(grant: fields["grant"]?.stringValue) }
        guard try await claim(id, ["used": .double(now)], expect: ["used": .null]) else {
            return .reused(grant: try await read(id)?["grant"]?.stringValue)
        }
        return .taken(issued)
    }

    enum CodeTaking {
        case unknown
        case reused(grant: String?)
        case taken(IssuedCode)
    }

    func noteGrant(_ grant: String, ofCode code: String) async {
        try? await store.write(StorageKeys.signIn("code", Digests.hash(code)), SessionUpdate(.updateMetadata(["grant": .string(grant)]), mustExist: true))
    }

    // MARK: Grants and refresh tokens

    func grant(_ id: String) async throws(SessionError) -> Grant? {
        guard SessionID.isAllowedID(id), let fields = try await read(StorageKeys.signIn("grant", id)) else { return nil }
        return Grant(id: id, fields)
    }

    func create(_ grant: Grant, refresh: String, lifetime: Double) async throws(SessionError) {
        try await write(StorageKeys.signIn("grant", grant.id), grant.fields, principal: grant.principal, lifetime: lifetime)
        try await write(StorageKeys.signIn("refresh", Digests.hash(refresh)), ["grant": .string(grant.id)], principal: grant.principal, lifetime: lifetime)
    }

    /// The grant a refresh token was issued for (its current one, or one it was rotated from).
    func grantID(ofRefresh token: String) async throws(SessionError) -> String? {
        try await read(StorageKeys.signIn("refresh", Digests.hash(token)))?["grant"]?.stringValue
    }

    /// Replaces a grant's refresh token, once: false when `old` was no longer its current one.
    func rotate(_ grant: Grant, from old: String, to new: String, lifetime: Double) async throws(SessionError) -> Bool {
        let id = StorageKeys.signIn("grant", grant.id)
        guard
            try await claim(id, ["refresh": .string(Digests.hash(new))], expect: ["refresh": .string(Digests.hash(old)), "revoked": .null], lifetime: lifetime)
        else { return false }
        try await write(StorageKeys.signIn("refresh", Digests.hash(new)), ["grant": .string(grant.id)], principal: grant.principal, lifetime: lifetime)
        return true
    }

    // MARK: Consent

    static func consentRecord(principal: String, clientID: String) -> String {
        StorageKeys.signIn("consent", principal, String(Digests.hash(clientID).prefix(32)))
    }

    func hasConsent(principal: String, clientID: String) async throws(SessionError) -> Bool {
        try await read(Self.consentRecord(principal: principal, clientID: clientID))?["client_id"]?.stringValue == clientID
    }

    func saveConsent(principal: String, clientID: String, at now: Double, lifetime: Double) async throws(SessionError) {
        try await write(
            Self.consentRecord(principal: principal, clientID: clientID), ["client_id": .string(clientID), "at": .double(now)],
            principal: principal, lifetime: lifetime)
    }

    // MARK: Revocations

    /// Revokes a grant: its refresh tokens stop working at once, its access tokens within a poll.
    func revoke(grant: Grant, at now: Double, markerLifetime: Double) async throws(SessionError) {
        try? await store.write(StorageKeys.signIn("grant", grant.id), SessionUpdate(.updateMetadata(["revoked": .double(now)]), mustExist: true))
        try await write(StorageKeys.signIn("revoked", "grant", grant.id), ["at": .double(now)], lifetime: markerLifetime)
    }

    /// Refuses every access token issued to `principal` until `now` (its data was deleted, or it
    /// was removed). Nobody's record: deleting the principal's data does not delete it.
    func revoke(principal: String, at now: Double, markerLifetime: Double) async throws(SessionError) {
        try await write(StorageKeys.signIn("revoked", "principal", principal), ["at": .double(now)], lifetime: markerLifetime)
    }
}

extension SessionID {
    /// Whether `text` is an id as it is (no part a caller gave may be a path's other parts).
    static func isAllowedID(_ text: String) -> Bool {
        (1...128).contains(text.utf8.count) && text.utf8.allSatisfy(isAllowed)
    }
}

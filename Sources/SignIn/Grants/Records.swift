import Foundation
import SessionModel

/// A login under way: what the client asked for, and this server's own leg at the provider.
struct PendingLogin: Sendable, Equatable {
    enum Stage: String, Sendable {
        /// Sent to the provider; waiting for the person to come back.
        case login
        /// Back, signed in as `principal`; waiting for consent.
        case consent
        /// A code was issued (or the person said no).
        case done
    }

    /// Also the `state` sent to the provider.
    var id: String
    var request: AuthorizationRequest
    /// The PKCE verifier and OpenID nonce of this server's request to the provider.
    var verifier: String
    var nonce: String
    var stage: Stage
    var principal: String?
    /// The SHA-256 of the browser cookie set when the person came back: the consent form is
    /// answered only from that browser.
    var browser: String?

    var fields: JSONObject {
        var fields: JSONObject = [
            "request": (try? JSONCoding.encoder.encode(request)).flatMap(JSONValue.parse) ?? .null,
            "verifier": .string(verifier), "nonce": .string(nonce), "stage": .string(stage.rawValue),
        ]
        if let principal { fields["principal"] = .string(principal) }
        if let browser { fields["browser"] = .string(browser) }
        return fields
    }

    init(id: String, request: AuthorizationRequest, verifier: String, nonce: String) {
        self.id = id
        self.request = request
        self.verifier = verifier
        self.nonce = nonce
        stage = .login
    }

    init?(_ fields: JSONObject) {
        guard let request = fields["request"].flatMap({ try? JSONCoding.decoder.decode(AuthorizationRequest.self, from: Data($0.jsonText().utf8)) }),
            let verifier = fields["verifier"]?.stringValue, let nonce = fields["nonce"]?.stringValue,
            let stage = fields["stage"]?.stringValue.flatMap(Stage.init(rawValue:))
        else { return nil }
        id = ""
        self.request = request
        self.verifier = verifier
        self.nonce = nonce
        self.stage = stage
        principal = fields["principal"]?.stringValue
        browser = fields["browser"]?.stringValue
    }
}

/// An authorization code as stored (under its hash): what it grants, to whom.
struct IssuedCode: Sendable, Equatable {
    var request: AuthorizationRequest
    var principal: String
    var issuedAt: Double

    var fields: JSONObject {
        [
            "request": (try? JSONCoding.encoder.encode(request)).flatMap(JSONValue.parse) ?? .null, "principal": .string(principal),
            "issued_at": .double(issuedAt),
        ]
    }

    init(request: AuthorizationRequest, principal: String, issuedAt: Double) {
        self.request = request
        self.principal = principal
        self.issuedAt = issuedAt
    }

    init?(_ fields: JSONObject) {
        guard let request = fields["request"].flatMap({ try? JSONCoding.decoder.decode(AuthorizationRequest.self, from: Data($0.jsonText().utf8)) }),
            let principal = fields["principal"]?.stringValue, let issuedAt = fields["issued_at"]?.numberValue
        else { return nil }
        self.init(request: request, principal: principal, issuedAt: issuedAt)
    }
}

/// A person's grant to a client: the refresh token it holds now, and whether it was revoked.
public struct Grant: Sendable, Equatable {
    public var id: String
    public var principal: String
    public var clientID: String
    public var scope: String
    public var resource: String
    /// The SHA-256 of its current refresh token.
    var refreshHash: String
    public var revoked: Bool

    var fields: JSONObject {
        [
            "principal": .string(principal), "client_id": .string(clientID), "scope": .string(scope), "resource": .string(resource),
            "refresh": .string(refreshHash),
        ]
    }

    init(id: String, principal: String, clientID: String, scope: String, resource: String, refreshHash: String) {
        self.id = id
        self.principal = principal
        self.clientID = clientID
        self.scope = scope
        self.resource = resource
        self.refreshHash = refreshHash
        revoked = false
    }

    init?(id: String, _ fields: JSONObject) {
        guard let principal = fields["principal"]?.stringValue, let clientID = fields["client_id"]?.stringValue,
            let scope = fields["scope"]?.stringValue, let resource = fields["resource"]?.stringValue, let refresh = fields["refresh"]?.stringValue
        else { return nil }
        self.init(id: id, principal: principal, clientID: clientID, scope: scope, resource: resource, refreshHash: refresh)
        revoked = fields["revoked"].map { $0 != .null } ?? false
    }
}

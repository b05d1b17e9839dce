import CurlHTTP
import Foundation
import Logging
import ServerRuntime
import ServiceLifecycle
import SessionClient
import SessionModel
import Synchronization

/// Sign-in on a worker: the authorization server's routes, the check of access tokens on every
/// request (no host round trip: signed tokens, the keys and revocations read in the background),
/// and what erasure needs. A service of the worker: it keeps the signing keys and the
/// revocations current.
public final class SignInService: Service, Sendable {
    /// Creates sign-in's counters (exported as 0 until something happens), so that a rate over
    /// them is defined from a worker's start, sign-in configured or not.
    public static func declareMetrics() {
        AuthorizationServer.Counter.declare()
    }

    public let configuration: SignInConfiguration
    let server: AuthorizationServer
    let tokens: AccessTokens
    let revocations: Revocations
    let clock: ServerClock
    let logger: Logger
    /// When the keys were last read because a token named one this worker did not know.
    private let lastKeyRead = Mutex<Double>(0)
    /// Tokens whose signature and claims were checked already: a client sends the same one
    /// with every request until it expires (what is checked each time is cheap: the clock,
    /// the revocations, the allow list). At most `verifiedCapacity`, emptied when full.
    private let verified = Mutex<[String: VerifiedToken]>([:])
    static let verifiedCapacity = 10_000

    public init(configuration: SignInConfiguration, store: any SessionManager, client: CurlClient, clock: ServerClock, logger: Logger) {
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        let grants = GrantStore(store: store)
        tokens = AccessTokens(
            grants: grants, issuer: configuration.issuer, resource: configuration.resource, lifetime: configuration.accessTokenLifetime, logger: logger)
        revocations = Revocations(store: store, interval: configuration.revocationPoll, clock: clock, logger: logger)
        let http = ProviderHTTP(client: client, caFile: configuration.caFile)
        let provider: any LoginProvider =
            switch configuration.provider {
            case .oidc(let issuer):
                OpenIDProvider(
                    issuer: issuer, clientID: configuration.clientID, clientSecret: configuration.clientSecret, callback: configuration.callbackURL,
                    http: http, clock: clock)
            case .github(let web, let api):
                GitHubProvider(
                    web: web, api: api, clientID: configuration.clientID, clientSecret: configuration.clientSecret, callback: configuration.callbackURL,
                    readsOrganisations: !configuration.allow.organisations.isEmpty, http: http)
            }
        server = AuthorizationServer(
            configuration: configuration, grants: grants, tokens: tokens, revocations: revocations, provider: provider,
            metadataFetch: ClientMetadataFetch(
                client: client, allowPrivate: configuration.metadataAllowPrivate, maxBytes: configuration.metadataMaxBytes,
                timeout: configuration.metadataTimeout, caFile: configuration.caFile),
            clock: clock, logger: logger)
    }

    /// The paths sign-in answers on the worker's public origin.
    public static let paths: Set<String> = [
        "/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-authorization-server",
        "/authorize", "/token", "/register", "/revoke", "/oauth/callback", "/oauth/consent",
    ]

    public func respond(_ request: SignInRequest) async -> SignInAnswer {
        await server.respond(request)
    }

    /// What a request without a usable token is told (RFC 6750, RFC 9728): where the protected
    /// resource's metadata is, and the scope to ask for.
    public var challenge: String {
        #"Bearer resource_metadata="\#(configuration.resourceMetadataURL)", scope="\#(AuthorizationRequest.scopes.joined(separator: " "))""#
    }

    /// The principal an access token signs in, or nil: forged, expired, for another resource,
    /// its grant revoked, its principal removed or no longer allowed.
    public func principal(ofToken token: String) async -> String? {
        let now = clock.wallNow
        var checked = self.verified.withLock { $0[token] }
        if checked == nil {
            checked = await tokens.verify(token, now: now)
            if checked == nil, await readKeysAgain(now: now) { checked = await tokens.verify(token, now: now) }
            if let checked {
                self.verified.withLock { known in
                    if known.count >= Self.verifiedCapacity { known.removeAll(keepingCapacity: true) }
                    known[token] = checked
                }
            }
        }
        guard let checked, checked.expiresAt > now, !revocations.refuses(checked), configuration.allow.stillAllows(principal: checked.principal)
        else { return nil }
        return checked.principal
    }

    /// Whether a token signed with a key this worker had not read yet should make it read them:
    /// at most once every ten seconds, so forged tokens cannot make it hammer the hosts.
    private func readKeysAgain(now: Double) async -> Bool {
        let due = lastKeyRead.withLock { last -> Bool in
            guard now - last >= 10 else { return false }
            last = now
            return true
        }
        guard due else { return false }
        return (try? await tokens.refresh(now: now)) != nil
    }

    /// Refuses every token of `principal` issued until now, on every worker within a poll (its
    /// data was deleted: its grants went with it).
    public func revoke(principal: String) async throws(SessionError) {
        let now = clock.wallNow
        try await server.grants.revoke(principal: principal, at: now, markerLifetime: configuration.accessTokenLifetime + 300)
        revocations.note(principal: principal, at: now)
    }

    /// Reads the signing keys (making the first one): before the worker serves, when it can.
    public func prepare() async {
        do {
            try await tokens.refresh(now: clock.wallNow)
        } catch {
            logger.warning("the token signing keys could not be read yet; retrying", metadata: ["error": "\(error.message)"])
        }
        await revocations.poll()
    }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.revocations.run() }
            group.addTask {
                // The keys are read every minute: a rotation made by any worker is seen by all.
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    do {
                        try await self.tokens.refresh(now: self.clock.wallNow)
                    } catch {
                        self.logger.warning("the token signing keys could not be read", metadata: ["error": "\(error)"])
                    }
                    try? await cancelWhenGracefulShutdown { try await self.clock.sleep(for: self.tokens.ready ? .seconds(60) : .seconds(2)) }
                }
            }
            try await group.waitForAll()
        }
    }
}

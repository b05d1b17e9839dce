import Crypto
import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

/// Two workers with sign-in on one durable host, a real OpenID Connect provider (or GitHub's
/// stand-in), client metadata documents over https, and the stand-in for Greptile: what the
/// sign-in tests run against. Both workers have the first one's URL as their public URL (as
/// behind a front, where both answer on one origin); the second fetches no metadata document
/// from a private address.
struct SignInStack {
    let standIn: UpstreamStandIn
    let host: HostHarness
    let provider: OIDCProvider?
    let documents: MetadataDocuments
    let workers: [WorkerHarness]
    let publicURL: String
    /// Where the provider client's secret is written.
    let directory: TemporaryDirectory
    static let adminKey = "sign-in-admin-key-0123456789"
    static let people = ["alice@example.com": "alice-pw", "mallory@evil.test": "mallory-pw", "carol@example.com": "carol-pw"]
    static let clientRedirect = "http://127.0.0.1:45871/callback"

    static func start(
        github: Bool = false, accessTokenLifetime: Int = 3_600, allow: String = "alice@example.com,@example.com,org:acme"
    ) async throws
        -> SignInStack
    {
        let standIn = try await UpstreamStandIn.startIndexed()
        let host = HostHarness()
        try await host.start()
        let ports = [freeLoopbackPort(), freeLoopbackPort()]
        let publicURL = "http://127.0.0.1:\(ports[0])"
        let documents = try await MetadataDocuments.start(redirectURI: clientRedirect)
        var provider: OIDCProvider?
        var login: [String]
        let directory = TemporaryDirectory("login-secret")
        let secretFile = directory.file("secret")
        if github {
            try "github-app-secret".write(toFile: secretFile, atomically: true, encoding: .utf8)
            try await standIn.control([
                "github_oauth": ["client_id": "github-app", "client_secret": "github-app-secret", "user": ["login": "OctoCat", "orgs": ["acme"]]]
            ])
            login = ["--login-provider", "github", "--login-issuer", standIn.base + "/github-web", "--login-client-id", "github-app"]
        } else {
            let started = try await OIDCProvider.start(
                callbacks: [publicURL + "/oauth/callback"], people: people, unverified: ["carol@example.com"])
            provider = started
            try OIDCProvider.clientSecret.write(toFile: secretFile, atomically: true, encoding: .utf8)
            login = ["--login-provider", "oidc", "--login-issuer", started.issuer, "--login-client-id", OIDCProvider.clientID]
        }
        login += [
            "--public-url", publicURL, "--login-client-secret-file", secretFile, "--login-allow", allow, "--access-token-lifetime", "\(accessTokenLifetime)",
            "--login-ca-file", documents.certificate,
        ]
        var workers: [WorkerHarness] = []
        for (index, port) in ports.enumerated() {
            let privateFetches = index == 0 ? ["--client-metadata-allow-private", "true"] : []
            let worker = WorkerHarness(
                arguments: login + privateFetches, environment: standIn.workerEnvironment.merging(["MCP_WORKER_ADMIN_KEY": adminKey]) { $1 })
            try await worker.start(hosts: [host.member], port: port)
            workers.append(worker)
        }
        return SignInStack(
            standIn: standIn, host: host, provider: provider, documents: documents, workers: workers, publicURL: publicURL, directory: directory)
    }

    func stop() async {
        for worker in workers { await worker.stop() }
        await host.stop()
        await provider?.stop()
        await documents.stop()
        await standIn.stop()
    }

    // MARK: The browser and the SDK

    /// Plays a person's browser from an authorization URL (Tests/Interop/mcp_signin.py --walk):
    /// where it ended, the client's redirect query or the page it stopped at.
    func walk(_ url: String, user: String = "alice@example.com", decision: String = "allow") async throws -> [String: Any] {
        try await python(["--walk", url, "--user", user, "--password", Self.people[user] ?? "none", "--decision", decision])
    }

    /// The official MCP Python SDK's OAuth client signing in and calling tools.
    func sdk(_ arguments: [String], user: String = "alice@example.com") async throws -> [String: Any] {
        try await python(["--front", publicURL, "--user", user, "--password", Self.people[user] ?? "none"] + arguments)
    }

    private func python(_ arguments: [String]) async throws -> [String: Any] {
        let directory = TemporaryDirectory("signin-client")
        let process = try ServiceProcess(
            executable: "/usr/bin/env", arguments: ["python3", "-u", Fixtures.interop("mcp_signin.py")] + arguments,
            environment: ["PYTHONPATH": URL(fileURLWithPath: Fixtures.interop("mcp_signin.py")).deletingLastPathComponent().path],
            logPath: directory.file("client.log"))
        _ = try await process.waitForExit(timeout: .seconds(120))
        let line = process.log.split(separator: "\n").last { $0.hasPrefix("{") } ?? ""
        guard let report = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw ServiceProcess.Failure(description: "the sign-in client printed no report:\n\(process.log)")
        }
        return report
    }

    // MARK: The protocol by hand

    func client(_ worker: Int = 0) -> JSONClient { JSONClient(base: workers[worker].base) }

    /// Registers a client (RFC 7591); its id, and its secret unless it is public.
    func register(public isPublic: Bool = true, redirect: String = clientRedirect) async throws -> (id: String, secret: String?) {
        var metadata: [String: Any] = ["client_name": "test client", "redirect_uris": [redirect]]
        if isPublic { metadata["token_endpoint_auth_method"] = "none" }
        let body = try JSONSerialization.data(withJSONObject: metadata)
        let response = try await client().send(.post, "/register", body: body, headers: ["Content-Type": "application/json"])
        #expect(response.status == 201, "\(response.text)")
        return (response.object["client_id"] as? String ?? "", response.object["client_secret"] as? String)
    }

    /// An authorization URL with this test's own PKCE.
    func authorizeURL(client: String, verifier: String, redirect: String = clientRedirect, extra: [String: String?] = [:]) -> String {
        var parameters: [String: String?] = [
            "response_type": "code", "client_id": client, "redirect_uri": redirect, "state": "test-state",
            "code_challenge": Self.challenge(verifier), "code_challenge_method": "S256", "resource": publicURL + "/mcp", "scope": "mcp",
        ]
        for (key, value) in extra { parameters[key] = value }
        var parts = URLComponents(string: publicURL + "/authorize")!
        parts.queryItems = parameters.sorted { $0.key < $1.key }.compactMap { key, value in value.map { URLQueryItem(name: key, value: $0) } }
        return parts.string!
    }

    /// A code for `client` through the browser, as alice.
    func code(client: String, verifier: String) async throws -> String {
        let walked = try await walk(authorizeURL(client: client, verifier: verifier))
        return try #require((walked["redirect"] as? [String: String])?["code"], "no code: \(walked)")
    }

    func token(_ form: [String: String], at worker: Int = 0) async throws -> HTTPResponse {
        let body = form.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.formEncoded($0.value))" }.joined(separator: "&")
        return try await client(worker).send(.post, "/token", body: Data(body.utf8), headers: ["Content-Type": "application/x-www-form-urlencoded"])
    }

    /// Calls a tool with a bearer token: the HTTP status of the answer.
    func toolStatus(_ token: String, at worker: Int) async throws -> Int {
        let body =
            #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_conversations","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#
        let response = try await JSONClient(base: workers[worker].base).send(
            .post, "/mcp", body: Data(body.utf8),
            headers: [
                "Authorization": "Bearer \(token)", "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "list_conversations",
            ])
        return response.status
    }

    static func challenge(_ verifier: String) -> String {
        base64URL(Data(SHA256.hash(data: Data(verifier.utf8))))
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func formEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }

    /// A token signed with the workers' own current key, with whatever claims: what only the
    /// key's holder could make (read here from the host, as a test may).
    func mint(_ claims: [String: Any]) async throws -> String {
        let record = try await host.client().send(.get, "/sessions/oauth:keys").object
        let keys = ((record["data"] as? [String: Any])?["metadata"] as? [String: Any])?["keys"] as? [[String: Any]] ?? []
        let key = try #require(keys.last)
        let header = try JSONSerialization.data(withJSONObject: ["alg": "HS256", "typ": "JWT", "kid": key["kid"] as? String ?? ""], options: .sortedKeys)
        let payload = try JSONSerialization.data(withJSONObject: claims, options: .sortedKeys)
        let input = Self.base64URL(header) + "." + Self.base64URL(payload)
        let signature = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data((key["secret"] as? String ?? "").utf8)))
        return input + "." + Self.base64URL(Data(signature))
    }
}

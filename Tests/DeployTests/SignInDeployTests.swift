import Crypto
import CurlHTTP
import Foundation
import TestSupport
import Testing

/// Sign-in as deployed: `deploy/stack` with `workers.sign_in`, nginx in front of two workers,
/// a real OpenID Connect provider, the official SDK's OAuth client and a real browser.
@Suite("Sign-in behind nginx: the official client, two workers, a restart, a browser", .serialized)
struct SignInDeployTests {
    static let people = ["alice@example.com": "alice-pw"]

    /// A local stack of two workers with sign-in against `provider`, fronted by nginx.
    static func stack(standIn: UpstreamStandIn, providerOut: Mutexed<OIDCProvider?>) async throws -> DeployStack {
        try await DeployStack.up("local", standIn: standIn, overrides: ["workers.count=2", "hosts.count=2"], signIn: true) { front in
            let provider = try await OIDCProvider.start(callbacks: [front + "/oauth/callback"], people: Self.people)
            providerOut.set(provider)
            let signIn: [String: Any] = [
                "public_url": front, "provider": "oidc", "issuer": provider.issuer, "client_id": OIDCProvider.clientID,
                "client_secret_file": try provider.secretFile(), "allow": "@example.com",
            ]
            let json = String(decoding: try JSONSerialization.data(withJSONObject: signIn, options: .sortedKeys), as: UTF8.self)
            return ["workers.sign_in=\(json)"]
        }
    }

    static func signIn(_ stack: DeployStack, state: String, phase: String) async throws -> [String: Any] {
        let directory = TemporaryDirectory("signin-client")
        let process = try ServiceProcess(
            executable: "/usr/bin/env",
            arguments: [
                "python3", "-u", Fixtures.interop("mcp_signin.py"), "--front", stack.front, "--user", "alice@example.com", "--password",
                Self.people["alice@example.com"]!, "--state", state, "--phase", phase,
            ], logPath: directory.file("client.log"))
        _ = try await process.waitForExit(timeout: .seconds(120))
        let line = process.log.split(separator: "\n").last { $0.hasPrefix("{") } ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? ["log": process.log]
    }

    @Test(
        "the official SDK signs in through nginx (discovery, registration, PKCE, login, consent), calls tools; its refresh works on the other worker while the first is down, and a new worker takes the tokens"
    )
    func sdkThroughNginx() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        let provider = Mutexed<OIDCProvider?>(nil)
        let stack = try await Self.stack(standIn: standIn, providerOut: provider)
        let stateDirectory = TemporaryDirectory("signin-state")
        let state = stateDirectory.file("client.json")

        let smoke = try await runScript("deploy/smoke", [stack.front])
        #expect(smoke.status == 0 && smoke.output.contains("sign-in discovery ok (issuer \(stack.front))"), "\(smoke.output)")
        let first = try await Self.signIn(stack, state: state, phase: "sign-in")
        #expect(first["ok"] as? Bool == true, "\(first)")
        #expect(first["consent_shown"] as? Bool == true)
        // Which worker exchanged the code: it goes away, and the refresh must be the other's.
        let exchange = try #require(stack.accessLog.first { $0.contains("\"POST /token") && $0.contains(" 200 ") }, "\(stack.accessLog)")
        let exchanger = try #require(exchange.range(of: #"upstream=127\.0\.0\.1:\d+"#, options: .regularExpression).map { String(exchange[$0].dropFirst(9)) })
        let ports = stack.pids.keys.filter { $0.hasPrefix("worker-") }
        let workerName = try #require(
            try await Self.worker(listeningOn: exchanger, among: ports.sorted(), stack: stack), "no worker listens on \(exchanger)")
        kill(stack.pids[workerName]!, SIGTERM)

        let resumed = try await Self.signIn(stack, state: state, phase: "resume")
        #expect(resumed["ok"] as? Bool == true, "\(resumed)")
        #expect(resumed["signed_in_now"] as? Bool == false, "a refresh, not a new login")
        let refresh = try #require(stack.accessLog.last { $0.contains("\"POST /token") && $0.contains(" 200 ") })
        #expect(!refresh.contains("upstream=\(exchanger)"), "the refresh was the other worker's: \(refresh)")

        // A worker started after the tokens were issued takes them: nothing was in the old ones.
        #expect(try await stack.stack(["scale", "workers", "3"]).status == 0)
        let access = try #require(resumed["access_token"] as? String)
        let newest = try #require(stack.pids.filter { $0.key.hasPrefix("worker-") }.keys.sorted().last)
        let port = try #require(Self.port(of: newest, stack: stack))
        let direct = try await JSONClient(base: "http://127.0.0.1:\(port)").send(
            .post, "/mcp",
            body: Data(
                #"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#
                    .utf8),
            headers: [
                "Authorization": "Bearer \(access)", "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list",
            ])
        #expect(direct.status == 200, "a new worker process accepts a token issued before it started: \(direct.text)")
        await stack.down()
        await provider.get()?.stop()
        await standIn.stop()
    }

    @Test(
        "a person in headless Chromium: the provider's login form, then the consent page (no external assets, a strict CSP), then Allow sends the code to the client"
    )
    func browser() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        let provider = Mutexed<OIDCProvider?>(nil)
        let stack = try await Self.stack(standIn: standIn, providerOut: provider)
        let redirect = "http://127.0.0.1:45871/callback"
        let registered = try await JSONClient(base: stack.front).send(
            .post, "/register", body: Data(#"{"client_name":"Browser check","redirect_uris":["\#(redirect)"],"token_endpoint_auth_method":"none"}"#.utf8),
            headers: ["Content-Type": "application/json"])
        let client = try #require(registered.object["client_id"] as? String, "\(registered.text)")
        let verifier = String(repeating: "browser-verifier-", count: 3)
        let challenge = Data(SHA256.hash(data: Data(verifier.utf8))).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        var url = URLComponents(string: stack.front + "/authorize")!
        url.queryItems = [
            .init(name: "response_type", value: "code"), .init(name: "client_id", value: client), .init(name: "redirect_uri", value: redirect),
            .init(name: "state", value: "browser-state"), .init(name: "code_challenge", value: challenge),
            .init(name: "code_challenge_method", value: "S256"), .init(name: "scope", value: "mcp"),
        ]
        let directory = TemporaryDirectory("browser-signin")
        let screenshot = directory.file("consent.png")
        let process = try ServiceProcess(
            executable: "/usr/bin/env",
            arguments: [
                "python3", "-u", Fixtures.path("browser_signin.py"), "--url", url.string!, "--user", "alice@example.com", "--password",
                Self.people["alice@example.com"]!, "--redirect", redirect, "--screenshot", screenshot,
            ], logPath: directory.file("browser.log"))
        #expect(try await process.waitForExit(timeout: .seconds(180)) == 0, "\(process.log)")
        let line = process.log.split(separator: "\n").last { $0.hasPrefix("{") } ?? ""
        let report = try #require((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any], "\(process.log)")
        #expect(report["ok"] as? Bool == true, "\(report)")
        #expect((report["title"] as? String) == "Allow Browser check?")
        #expect((report["text"] as? String ?? "").contains("You are signed in as alice@example.com"))
        let requests = report["requests"] as? [String] ?? []
        #expect(!requests.isEmpty && requests.allSatisfy { $0.hasPrefix(stack.front + "/") }, "the consent page loads nothing from elsewhere: \(requests)")
        #expect((report["width"] as? Int ?? 0) >= 800 && (report["button_pixels"] as? Int ?? 0) > 1_000, "the Allow button is drawn: \(report)")
        let answered = report["redirect"] as? [String: String] ?? [:]
        #expect(answered["state"] == "browser-state" && answered["iss"] == stack.front, "\(answered)")
        let token = try await JSONClient(base: stack.front).send(
            .post, "/token",
            body: Data(
                "grant_type=authorization_code&code=\(answered["code"] ?? "")&client_id=\(client)&code_verifier=\(verifier)&redirect_uri=\(redirect.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
                    .utf8),
            headers: ["Content-Type": "application/x-www-form-urlencoded"])
        #expect(token.status == 200 && token.object["access_token"] is String, "the browser's code is good: \(token.text)")
        await stack.down()
        await provider.get()?.stop()
        await standIn.stop()
    }

    @Test(
        "staging as shipped, with GitHub sign-in (GitHub's flow on its stand-in): the smoke test finds discovery through nginx, and the SDK signs in as login@github"
    )
    func stagingWithGitHub() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        try await standIn.control([
            "github_oauth": [
                "client_id": "Iv1.staging-greptile-mcp", "client_secret": "staging-app-secret", "user": ["login": "octocat", "orgs": ["example-org"]],
            ]
        ])
        let secrets = TemporaryDirectory("github-secret")
        try "staging-app-secret".write(toFile: secrets.file("secret"), atomically: true, encoding: .utf8)
        let stack = try await DeployStack.up("staging", standIn: standIn, signIn: true) { front in
            [
                "workers.sign_in.public_url=\(front)", "workers.sign_in.issuer=\(standIn.base)/github-web",
                "workers.sign_in.client_secret_file=\(secrets.file("secret"))",
            ]
        }
        let smoke = try await runScript("deploy/smoke", [stack.front, "--repository", "acme/widgets"])
        #expect(smoke.status == 0 && smoke.output.contains("sign-in discovery ok") && smoke.output.contains("skipped"), "\(smoke.output)")
        let stateDirectory = TemporaryDirectory("signin-state")
        let report = try await Self.signIn(stack, state: stateDirectory.file("client.json"), phase: "sign-in")
        #expect(report["ok"] as? Bool == true, "\(report)")
        await stack.down()
        await standIn.stop()
    }

    /// The stack's worker (by name) whose port is `address`'s.
    static func worker(listeningOn address: String, among names: [String], stack: DeployStack) async throws -> String? {
        names.first { port(of: $0, stack: stack).map { "127.0.0.1:\($0)" } == address }
    }

    /// A worker's port, from the stack's configuration: consecutive from the first.
    static func port(of name: String, stack: DeployStack) -> Int? {
        guard let index = Int(name.dropFirst("worker-".count)),
            let first = stack.settings.first(where: { $0.hasPrefix("workers.first_port=") }).flatMap({ Int($0.dropFirst("workers.first_port=".count)) })
        else { return nil }
        return first + index - 1
    }
}

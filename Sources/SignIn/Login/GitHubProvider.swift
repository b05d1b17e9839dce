import Foundation
import SessionModel

/// GitHub's OAuth app flow (web application flow, with PKCE): the person logs in at GitHub,
/// this server exchanges the code for a GitHub token, reads who it is (and, when the allow list
/// names organisations, which ones it belongs to), and forgets the token.
struct GitHubProvider: LoginProvider {
    /// GitHub's site (`https://github.com`) and REST API (`https://api.github.com`).
    let web: String
    let api: String
    let clientID: String
    let clientSecret: String
    let callback: String
    /// Whether organisation membership is read (the allow list names organisations).
    let readsOrganisations: Bool
    let http: ProviderHTTP

    func authorizationURL(state: String, nonce: String, challenge: String) async throws(LoginFailure) -> String {
        AuthorizationRequest.redirect(
            web + "/login/oauth/authorize",
            parameters: [
                ("client_id", clientID), ("redirect_uri", callback), ("scope", readsOrganisations ? "read:user read:org" : "read:user"),
                ("state", state), ("code_challenge", challenge), ("code_challenge_method", "S256"), ("allow_signup", "false"),
            ])
    }

    func identity(code: String, verifier: String, nonce: String) async throws(LoginFailure) -> Identity {
        let answer = try await http.form(
            web + "/login/oauth/access_token",
            [("client_id", clientID), ("client_secret", clientSecret), ("code", code), ("redirect_uri", callback), ("code_verifier", verifier)],
            what: "exchanging the GitHub login code")
        guard let token = answer["access_token"]?.stringValue else {
            throw LoginFailure("GitHub refused the login code (\(answer["error"]?.stringValue?.prefix(80) ?? "no token"))")
        }
        let user = try await http.get(api + "/user", bearer: token, what: "reading the GitHub user")
        guard let login = user["login"]?.stringValue, !login.isEmpty else { throw LoginFailure("GitHub did not say who signed in") }
        var organisations: [String] = []
        if readsOrganisations {
            let orgs = try await http.getList(api + "/user/orgs?per_page=100", bearer: token, what: "reading the GitHub user's organisations")
            organisations = orgs.compactMap { $0.objectValue?["login"]?.stringValue }
        }
        return Identity(kind: .github, name: login, organisations: organisations)
    }
}

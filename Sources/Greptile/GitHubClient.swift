import CurlHTTP
import Foundation
import Logging
import ServerRuntime
import SessionModel
import Synchronization

/// The two GitHub calls the worker makes: a repository's default branch, and whose token this is.
public final class GitHubClient: Sendable {
    public let configuration: UpstreamConfiguration
    private let caller: UpstreamCaller
    /// Default branches change rarely; a tool call should not cost a GitHub round trip each time.
    private let branches = Mutex<[String: (branch: String, at: ServerClock.Instant)]>([:])
    private let branchLifetime: Duration = .seconds(600)
    private let clock: ServerClock

    public init(configuration: UpstreamConfiguration, client: CurlClient, clock: ServerClock = .system, logger: Logger) {
        self.configuration = configuration
        self.clock = clock
        caller = UpstreamCaller(
            service: "GitHub", client: client, retry: configuration.retry, maxRetryAfter: configuration.maxRetryAfter, clock: clock,
            logger: logger)
    }

    /// `GET /repos/{owner}/{repo}`.
    public func repository(_ fullName: String) async throws -> GitHubRepository {
        do {
            try RepositoryName.validate(fullName, remote: "github")
        } catch {
            throw GreptileError(.badRequest, error.message)
        }
        let path = "/repos/" + fullName.split(separator: "/").map { String($0).percentEncodedPathSegment }.joined(separator: "/")
        let response = try await caller.call(request(path), what: "looking up \(fullName) on GitHub")
        switch response.status {
        case 200:
            guard let repository = try? JSONCoding.decoder.decode(GitHubRepository.self, from: response.body) else {
                throw GreptileError(.invalidResponse, "GitHub's answer for \(fullName) lacks default_branch")
            }
            return repository
        case 401:
            throw GreptileError(.unauthorized, "GITHUB_TOKEN was rejected by GitHub (HTTP 401): \(UpstreamCaller.detail(of: response))", status: 401)
        case 403:
            throw GreptileError(.unauthorized, "GitHub refused access to \(fullName) (HTTP 403): \(UpstreamCaller.detail(of: response))", status: 403)
        case 404:
            throw GreptileError(.notFound, "repository \(fullName) not found on GitHub, or GITHUB_TOKEN cannot see it", status: 404)
        default:
            throw GreptileError(.badRequest, "GitHub refused the lookup of \(fullName) (HTTP \(response.status))", status: response.status)
        }
    }

    /// A repository's default branch, remembered for ten minutes.
    public func defaultBranch(of fullName: String) async throws -> String {
        let key = fullName.lowercased()
        if let cached = branches.withLock({ $0[key] }), clock.elapsed(since: cached.at) < branchLifetime {
            return cached.branch
        }
        let branch = try await repository(fullName).defaultBranch
        let now = clock.now
        branches.withLock { $0[key] = (branch, now) }
        return branch
    }

    /// `GET /user`: the login the token belongs to (diagnostics).
    public func user() async throws -> String {
        let response = try await caller.call(request("/user"), what: "checking GITHUB_TOKEN")
        switch response.status {
        case 200:
            guard let login = (try? JSONCoding.decoder.decode(JSONObject.self, from: response.body))?["login"]?.stringValue else {
                throw GreptileError(.invalidResponse, "GitHub's /user answer has no login")
            }
            return login
        case 401:
            throw GreptileError(.unauthorized, "GITHUB_TOKEN was rejected by GitHub (HTTP 401)", status: 401)
        default:
            throw GreptileError(.badRequest, "GitHub refused /user (HTTP \(response.status))", status: response.status)
        }
    }

    private func request(_ path: String) throws -> HTTPRequest {
        var headers: HTTPHeaders = ["Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"]
        if let token = configuration.githubToken {
            headers.add("Authorization", "Bearer \(token)")
        } else {
            throw GreptileError(.missingCredentials, "GITHUB_TOKEN is not set: export a token with read access to the repositories")
        }
        return HTTPRequest(url: configuration.githubBaseURL + path, headers: headers, timeout: configuration.callTimeout)
    }
}

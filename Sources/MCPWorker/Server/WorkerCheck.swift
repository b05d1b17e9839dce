import CurlHTTP
import Foundation
import Greptile
import HashRing
import HostLink
import Logging
import ServiceMetrics
import SessionModel
import Settings

/// `mcp-worker check`: what a worker with this configuration would run into, each problem
/// with its fix in words.
public enum WorkerCheck {
    public struct Finding: Sendable {
        public let ok: Bool
        public let subject: String
        public let detail: String

        public var line: String {
            "\(ok ? "ok     " : "problem") \(subject): \(detail)"
        }
    }

    public static func run(_ configuration: WorkerConfiguration) async -> [Finding] {
        let client = CurlClient(configuration: .init(userAgent: "greptile-mcp/\(WorkerServer.version) check"))
        defer { client.shutdown() }
        var logger = Logger(label: "mcp-worker-check")
        logger.logLevel = .critical
        var findings: [Finding] = []
        findings += await secrets(configuration.upstream, client: client, logger: logger)
        findings += await hosts(configuration, client: client)
        if configuration.apiKeys.isEmpty {
            findings.append(Finding(ok: true, subject: "client keys", detail: "none: /mcp runs open, which only loopback allows"))
        } else {
            findings.append(Finding(ok: true, subject: "client keys", detail: "\(configuration.apiKeys.count) principal(s)"))
        }
        return findings
    }

    static func secrets(_ upstream: UpstreamConfiguration, client: CurlClient, logger: Logger) async -> [Finding] {
        var findings: [Finding] = []
        // Short limits and a single attempt: a diagnosis should not wait out retries.
        var quick = upstream
        quick.retry.attempts = 1
        quick.callTimeout = .seconds(10)
        if upstream.githubToken == nil {
            findings.append(Finding(ok: false, subject: "GITHUB_TOKEN", detail: "not set: export a GitHub token with read access to the repositories"))
        } else {
            do {
                let login = try await GitHubClient(configuration: quick, client: client, logger: logger).user()
                findings.append(Finding(ok: true, subject: "GITHUB_TOKEN", detail: "accepted by \(upstream.githubBaseURL) (user \(login))"))
            } catch let error as GreptileError where error.kind == .unauthorized {
                findings.append(
                    Finding(ok: false, subject: "GITHUB_TOKEN", detail: "rejected by GitHub: create a new token with repository read access and export it"))
            } catch {
                findings.append(
                    Finding(
                        ok: false, subject: "GITHUB_TOKEN",
                        detail: "could not be checked at \(upstream.githubBaseURL): \(error); check GITHUB_API_URL and the network"))
            }
        }
        if upstream.greptileAPIKey == nil {
            findings.append(Finding(ok: false, subject: "GREPTILE_API_KEY", detail: "not set: export the API key from app.greptile.com"))
        } else if upstream.githubToken != nil {
            // The status of a repository nobody indexed: 404 means the key was accepted.
            let probe = RepositoryRef(remote: "github", repository: "greptile-mcp/configuration-check", branch: "main")
            do {
                _ = try await GreptileClient(configuration: quick, client: client, logger: logger).status(of: probe)
                findings.append(Finding(ok: true, subject: "GREPTILE_API_KEY", detail: "accepted by \(upstream.greptileBaseURL)"))
            } catch let error as GreptileError where error.kind == .notFound {
                findings.append(Finding(ok: true, subject: "GREPTILE_API_KEY", detail: "accepted by \(upstream.greptileBaseURL)"))
            } catch let error as GreptileError where error.kind == .unauthorized {
                findings.append(
                    Finding(ok: false, subject: "GREPTILE_API_KEY", detail: "rejected by Greptile: copy a valid key from app.greptile.com and export it"))
            } catch {
                findings.append(
                    Finding(
                        ok: false, subject: "GREPTILE_API_KEY",
                        detail: "could not be checked at \(upstream.greptileBaseURL): \(error); check GREPTILE_BASE_URL and the network"))
            }
        }
        return findings
    }

    static func hosts(_ configuration: WorkerConfiguration, client: CurlClient) async -> [Finding] {
        guard !configuration.hosts.isEmpty else {
            return [Finding(ok: true, subject: "hosts", detail: "none: sessions are kept in memory (local development only)")]
        }
        let ours = Membership(version: configuration.ringVersion, hosts: configuration.hosts)
        var findings: [Finding] = []
        for host in configuration.hosts {
            let subject = "host \(host.name) (\(host.address))"
            switch await HostClient(curl: client, token: configuration.hostToken).ring(at: "\(host.address)", timeout: .seconds(3)) {
            case .failure(.unauthorized):
                findings.append(Finding(ok: false, subject: subject, detail: "refuses our token: give workers and hosts the same DURABLE_HOST_TOKEN"))
            case .failure(.unexpected(let status)):
                findings.append(Finding(ok: false, subject: subject, detail: "answered /ring with HTTP \(status): is this a durable-host?"))
            case .failure(.unreachable(let reason)):
                findings.append(Finding(ok: false, subject: subject, detail: "unreachable (\(reason)): start it, or fix its address in --hosts"))
            case .success(let info):
                if info.node != host.name {
                    findings.append(Finding(ok: false, subject: subject, detail: "is node '\(info.node ?? "?")', not '\(host.name)': fix the name in --hosts"))
                } else if info.version > ours.version {
                    findings.append(
                        Finding(
                            ok: false, subject: subject,
                            detail:
                                "serves ring version \(info.version), newer than ours (\(ours.version)): update --hosts and ring_version (the worker follows by itself meanwhile)"
                        ))
                } else if !info.agrees(with: RingInfo(node: nil, membership: ours)) {
                    findings.append(
                        Finding(
                            ok: false, subject: subject,
                            detail:
                                "serves ring version \(info.version) with other members than ours (version \(ours.version)): give workers and hosts the same members and ring_version"
                        ))
                } else {
                    findings.append(Finding(ok: true, subject: subject, detail: "reachable, ring version \(info.version) agreed"))
                }
            }
        }
        return findings
    }
}

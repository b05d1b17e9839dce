import CurlHTTP
import Foundation
import TestSupport
import Testing

/// The repository's root, for its scripts and configurations.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// Runs one of the repository's scripts to its end; returns its exit status and output.
func runScript(
    _ script: String, _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(180)
) async throws -> (status: Int32, output: String) {
    let directory = TemporaryDirectory("script")
    let process = try ServiceProcess(
        executable: "/usr/bin/env", arguments: ["python3", "\(repositoryRoot)/\(script)"] + arguments, environment: environment,
        logPath: directory.file("output.log"))
    let status = try await process.waitForExit(timeout: timeout)
    return (status, process.log)
}

/// A stack brought up by `deploy/stack up` from one of the deploy/ configurations, on free
/// ports and in a temporary directory, with the stand-in as Greptile and GitHub.
final class DeployStack: Sendable {
    let config: String
    let settings: [String]
    let environment: [String: String]
    let directory: TemporaryDirectory
    let front: String
    let endpoint: String

    private init(config: String, settings: [String], environment: [String: String], directory: TemporaryDirectory, front: String, endpoint: String) {
        self.config = config
        self.settings = settings
        self.environment = environment
        self.directory = directory
        self.front = front
        self.endpoint = endpoint
    }

    /// `overrides` are `--set` items on top of the ports and directories chosen here; `prepare`
    /// is given the front's URL before anything starts, and returns more of them. Sign-in, which
    /// the shipped configurations carry, is off unless `signIn` (a test that has a provider for it
    /// gives its settings in `prepare`). `environment` reaches every process of the stack.
    static func up(
        _ config: String, standIn: UpstreamStandIn, overrides: [String] = [], tls: Bool = false, signIn: Bool = false,
        environment extra: [String: String] = [:],
        prepare: (_ front: String) async throws -> [String] = { _ in [] }
    ) async throws -> DeployStack {
        let directory = TemporaryDirectory("stack")
        // Workers take up to 8 ports from base, hosts 4 from base + 100, a stack's own
        // PostgreSQL base + 150, the front base + 200.
        let base = freeLoopbackPortRange(201)
        let frontPort = base + 200
        var settings =
            [
                "run_dir=\(directory.file("run"))", "storage.data_dir=\(directory.file("data"))",
                "front.listen=127.0.0.1:\(frontPort)", "workers.first_port=\(base)", "hosts.first_port=\(base + 100)",
                "storage.postgres_port=\(base + 150)",
            ] + (signIn ? [] : ["workers.sign_in=null"]) + overrides
        if tls { settings += try selfSignedCertificate(in: directory) }
        settings += try await prepare("\(tls ? "https" : "http")://127.0.0.1:\(frontPort)")
        var environment = standIn.workerEnvironment
        environment["GREPTILE_MCP_BIN_DIR"] = BuiltProducts.directory.path
        environment.merge(extra) { $1 }
        let (status, output) = try await runScript(
            "deploy/stack", ["up", "deploy/\(config).json"] + settings.flatMap { ["--set", $0] }, environment: environment)
        guard status == 0, let line = output.split(separator: "\n").first(where: { $0.hasPrefix("MCP endpoint: ") }) else {
            throw ServiceProcess.Failure(description: "deploy/stack up \(config) failed (\(status)):\n\(output)")
        }
        let endpoint = String(line.dropFirst("MCP endpoint: ".count))
        return DeployStack(
            config: config, settings: settings, environment: environment, directory: directory,
            front: String(endpoint.dropLast("/mcp".count)), endpoint: endpoint)
    }

    private static func selfSignedCertificate(in directory: TemporaryDirectory) throws -> [String] {
        let certificate = directory.file("cert.pem")
        let key = directory.file("key.pem")
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1", "-subj", "/CN=localhost"]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try launch(openssl)
        openssl.waitUntilExit()
        return ["front.tls.certificate=\(certificate)", "front.tls.key=\(key)"]
    }

    /// Runs `deploy/stack COMMAND` on this stack.
    func stack(_ command: [String]) async throws -> (status: Int32, output: String) {
        try await runScript(
            "deploy/stack", [command[0], "deploy/\(config).json"] + command.dropFirst() + settings.flatMap { ["--set", $0] },
            environment: environment)
    }

    /// The stack's state file: pids by component.
    var pids: [String: Int32] {
        let data = (try? Data(contentsOf: URL(fileURLWithPath: directory.file("run/stack.json")))) ?? Data()
        let state = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        return ((state?["pids"] as? [String: Int]) ?? [:]).mapValues { Int32($0) }
    }

    /// nginx's access log lines.
    var accessLog: [String] {
        ((try? String(contentsOfFile: directory.file("run/nginx/logs/access.log"), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func down() async {
        _ = try? await stack(["down"])
    }
}

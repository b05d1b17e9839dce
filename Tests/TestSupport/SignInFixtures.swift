import CurlHTTP
import Foundation

/// The fixtures of sign-in, as processes: a real OpenID Connect provider (django-oauth-toolkit,
/// Tests/Fixtures/oidc_provider.py) and client metadata documents over https
/// (Tests/Fixtures/metadata_documents.py).
public enum Fixtures {
    public static func path(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }

    public static func interop(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Interop/\(name)").path
    }
}

/// A real OpenID Connect provider on loopback with its own people, and one client registered
/// for the worker's callback.
public final class OIDCProvider: Sendable {
    public let process: ServiceProcess
    public let base: String
    private let directory: TemporaryDirectory
    public static let clientID = "greptile-mcp-worker"
    public static let clientSecret = "provider-client-secret-0123456789"

    /// The provider's issuer (its discovery document is under it).
    public var issuer: String { base + "/o" }

    private init(process: ServiceProcess, base: String, directory: TemporaryDirectory) {
        self.process = process
        self.base = base
        self.directory = directory
    }

    /// `people`: email → password; `unverified`: addresses whose id_token says email_verified false.
    public static func start(callbacks: [String], people: [String: String], unverified: [String] = []) async throws -> OIDCProvider {
        let directory = TemporaryDirectory("oidc")
        var arguments = ["python3", "-u", Fixtures.path("oidc_provider.py"), "--client-id", clientID, "--client-secret", clientSecret]
        for callback in callbacks { arguments += ["--redirect-uri", callback] }
        for (email, password) in people.sorted(by: { $0.key < $1.key }) { arguments += ["--user", "\(email):\(password)"] }
        for email in unverified { arguments += ["--unverified", email] }
        let process = try ServiceProcess(executable: "/usr/bin/env", arguments: arguments, logPath: directory.file("provider.log"))
        let base = try await process.waitForListening(timeout: .seconds(90))
        return OIDCProvider(process: process, base: base, directory: directory)
    }

    /// A file holding the client's secret, for `--login-client-secret-file`.
    public func secretFile() throws -> String {
        let path = directory.file("client-secret")
        try Self.clientSecret.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    public func stop() async { await process.stop() }
}

/// Client ID Metadata Documents served over https on loopback, with a certificate of their
/// own (`certificate`, for the worker's `--login-ca-file`).
public final class MetadataDocuments: Sendable {
    public let process: ServiceProcess
    public let base: String
    public let certificate: String
    private let directory: TemporaryDirectory

    private init(process: ServiceProcess, base: String, certificate: String, directory: TemporaryDirectory) {
        self.process = process
        self.base = base
        self.certificate = certificate
        self.directory = directory
    }

    public static func start(redirectURI: String) async throws -> MetadataDocuments {
        let directory = TemporaryDirectory("cimd")
        let certificate = directory.file("cert.pem")
        let key = directory.file("key.pem")
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try launch(openssl)
        try await offThePool { openssl.waitUntilExit() }
        let process = try ServiceProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", "-u", Fixtures.path("metadata_documents.py"), "--cert", certificate, "--key", key, "--redirect-uri", redirectURI],
            logPath: directory.file("documents.log"))
        let base = try await process.waitForListening()
        return MetadataDocuments(process: process, base: base, certificate: certificate, directory: directory)
    }

    public func stop() async { await process.stop() }
}

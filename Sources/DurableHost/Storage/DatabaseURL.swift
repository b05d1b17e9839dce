import Foundation
import NIOSSL
import PostgresNIO
import Settings

/// Where the PostgreSQL database is: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=MODE]`.
///
/// Read from the environment (`DURABLE_HOST_DATABASE_URL`) or a file (`database_url_file`),
/// never from a flag; `description` leaves the password out, so the URL can be logged.
public struct DatabaseURL: Sendable, CustomStringConvertible {
    public enum TLSMode: String, Sendable {
        /// No TLS (a database on loopback or a private network).
        case disable
        /// TLS when the server offers it (PostgreSQL's default).
        case prefer
        /// TLS, without checking the server's certificate.
        case require
        /// TLS, checking the certificate and the host name.
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var user: String
    var password: String?
    public var database: String
    public var tls: TLSMode

    public init(parsing text: String) throws(SettingsError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let components = URLComponents(string: trimmed), ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty
        else {
            throw SettingsError("the database URL must look like postgres://USER:PASSWORD@HOST:PORT/DATABASE (its password is not shown here)")
        }
        guard let user = components.user, !user.isEmpty else {
            throw SettingsError("the database URL names no user: postgres://USER@HOST/DATABASE")
        }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw SettingsError("the database URL names no database: postgres://USER@HOST/DATABASE")
        }
        let mode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        guard let tls = TLSMode(rawValue: mode) else {
            throw SettingsError("the database URL's sslmode must be disable, prefer, require or verify-full (got '\(mode)')")
        }
        self.host = host
        port = components.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        password = components.password.map { $0.removingPercentEncoding ?? $0 }
        self.database = database.removingPercentEncoding ?? database
        self.tls = tls
    }

    /// The URL without its password.
    public var description: String {
        "postgres://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)?sslmode=\(tls.rawValue)"
    }

    var clientConfiguration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS
        switch self.tls {
        case .disable:
            tls = .disable
        case .prefer:
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            tls = .prefer(configuration)
        case .require:
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            tls = .require(configuration)
        case .verifyFull:
            tls = .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(2)
        configuration.options.minimumConnections = 1
        configuration.options.maximumConnections = 16
        return configuration
    }
}

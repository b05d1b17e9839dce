import Foundation

/// A throwaway PostgreSQL server for one test: its own data directory (a copy of a cluster
/// `initdb` made once per test run), its own port on 127.0.0.1, trust authentication for the
/// user `app`, `fsync` and `synchronous_commit` left on (commits are durable, as in
/// production). PostgreSQL refuses to run as root, so as root it runs as the `postgres` user
/// (`setpriv`, which keeps the pid: the test can signal the server itself).
public final class PostgresCluster: Sendable {
    public let directory: TemporaryDirectory
    public let port: Int
    private let server = Mutexed<ServiceProcess?>(nil)
    private let starts = Mutexed(0)

    /// Debian puts the server's programs under /usr/lib/postgresql/VERSION/bin.
    public static let binDirectory: String = {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        return versions.last.map { "\(root)/\($0)/bin" } ?? "/usr/lib/postgresql/15/bin"
    }()

    public var url: String { "postgres://app@127.0.0.1:\(port)/postgres?sslmode=disable" }

    private init(directory: TemporaryDirectory, port: Int) {
        self.directory = directory
        self.port = port
    }

    /// A new cluster, started.
    public static func start() async throws -> PostgresCluster {
        let directory = TemporaryDirectory("postgres")
        let data = directory.file("data")
        try await offThePool {
            let template = try Template.shared.path()
            try run("/bin/cp", ["-a", template, data])
            try ownByServer(directory.path)
        }
        let cluster = PostgresCluster(directory: directory, port: freeLoopbackPort())
        try await cluster.startServer()
        return cluster
    }

    /// Starts the server (again) on the same data and port.
    public func startServer() async throws {
        let attempt = starts.update {
            $0 += 1; return $0
        }
        let process = try ServiceProcess(
            executable: Self.asServer(Self.binDirectory + "/postgres").0,
            arguments: Self.asServer(Self.binDirectory + "/postgres").1 + [
                "-D", directory.file("data"), "-p", "\(port)", "-k", directory.path, "-c", "listen_addresses=127.0.0.1",
                "-c", "max_connections=200", "-c", "log_min_messages=warning",
            ],
            logPath: directory.file("postgres-\(attempt).log"))
        server.set(process)
        // A loaded machine (the whole suite at once) can take tens of seconds; the message
        // carries the server's log, for a start that never comes.
        try await eventually("PostgreSQL accepts connections on port \(port); its log:\n\(process.log)", timeout: .seconds(90)) {
            if let status = process.exitStatus { throw ServiceProcess.Failure(description: "postgres exited with \(status):\n\(process.log)") }
            return (try? await offThePool { try self.query("SELECT 1") }) == "1"
        }
    }

    public var process: ServiceProcess? { server.get() }

    /// Stops the server: `fast` (SIGINT: sessions cut, a clean shutdown) or `immediate`
    /// (SIGQUIT: no checkpoint, crash recovery at the next start).
    public func stopServer(immediate: Bool = false) async {
        guard let process = server.get(), process.exitStatus == nil else { return }
        process.signal(immediate ? SIGQUIT : SIGINT)
        _ = try? await process.waitForExit(timeout: .seconds(30))
    }

    /// Runs SQL with psql and returns its unaligned output.
    @discardableResult
    public func query(_ sql: String) throws -> String {
        try Self.capture(
            Self.binDirectory + "/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "app", "-d", "postgres", "-AtqX", "-v", "ON_ERROR_STOP=1", "-c", sql]
        )
        .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func stop() async {
        await stopServer()
    }

    deinit {
        if let process = server.get(), process.exitStatus == nil { process.signal(SIGQUIT) }
    }

    // MARK: Plumbing

    /// One `initdb` per test run; each cluster copies it (a copy takes a fraction of initdb's second).
    final class Template: Sendable {
        static let shared = Template()
        private let made = Mutexed<String?>(nil)
        private let directory = TemporaryDirectory("postgres-template")

        func path() throws -> String {
            try made.update { made -> String in
                if let made { return made }
                let data = directory.file("data")
                ProcessReaper.shared.removeAtExit(directory.path)
                try ownByServer(directory.path)
                let (program, prefix) = asServer(binDirectory + "/initdb")
                try run(program, prefix + ["-D", data, "-U", "app", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"])
                made = data
                return data
            }
        }
    }

    static var isRoot: Bool { getuid() == 0 }

    /// The program to run a server command with, and its leading arguments.
    static func asServer(_ program: String) -> (String, [String]) {
        isRoot ? ("/usr/bin/setpriv", ["--reuid=postgres", "--regid=postgres", "--clear-groups", "--", program]) : (program, [])
    }

    static func ownByServer(_ path: String) throws {
        guard isRoot else { return }
        try run("/bin/chown", ["-R", "postgres:postgres", path])
    }

    static func run(_ program: String, _ arguments: [String]) throws {
        _ = try capture(program, arguments)
    }

    static func capture(_ program: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try launch(process)
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw ServiceProcess.Failure(description: "\(program) \(arguments.joined(separator: " ")) failed (\(process.terminationStatus)):\n\(text)")
        }
        return text
    }
}

import ArgumentParser
import DurableHost
import DurableHostCommands
import Foundation
import Logging
import Prometheus
import ServiceMetrics
import SessionModel
import Settings

/// `durable-host`: configuration in, services out (README, "durable-host"); with `backup` and
/// `restore`, a copy of a host's SQLite storage taken while it runs, and brought back.
@main
struct DurableHostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "durable-host",
        abstract: "Owns sessions (history, metadata, transport state) durably; serves the host API over HTTP.",
        version: DurableHostServer.version,
        subcommands: [Serve.self, Backup.self, Restore.self],
        defaultSubcommand: Serve.self)
}

/// `durable-host [serve] --listen ... --data ...`: the host itself.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the host API (the default: `durable-host --listen ...` is `durable-host serve --listen ...`).",
        discussion: """
            Every setting is a flag, an environment variable DURABLE_HOST_<KEY> or a key of the
            --config JSON file, in that order of precedence. The token comes from
            DURABLE_HOST_TOKEN or the file named by token_file, never from a flag.
            """)

    @OptionGroup var options: ServeOptions

    func run() async throws {
        try await options.run()
    }
}

/// `durable-host backup --data DIR --to FILE`: a consistent copy of a host's SQLite storage,
/// taken while the host serves writes.
struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a host's SQLite storage to FILE while it runs: every write acknowledged before the backup began is in it.")

    @Option(help: "The host's data directory (its --data).")
    var data: String
    @Option(help: "The backup file to write; it must not exist.")
    var to: String

    func run() throws {
        do {
            let summary = try SQLiteBackup.backup(directory: data, to: to)
            print("backed up \(summary.sessions) sessions (\(summary.bytes) bytes) to \(to)")
        } catch {
            ServiceRunner.reportConfigurationError(program: "durable-host backup", error.message)
            throw ExitCode(1)
        }
    }
}

/// `durable-host restore --from FILE --data DIR`: a backup brought back into an empty data directory.
struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring a backup back into an empty data directory; a host started on it serves what the backup held.")

    @Option(help: "The backup file (from durable-host backup).")
    var from: String
    @Option(help: "The data directory to restore into; it must hold no database.")
    var data: String

    func run() throws {
        do {
            let summary = try SQLiteBackup.restore(from: from, into: data)
            print("restored \(summary.sessions) sessions (\(summary.bytes) bytes) into \(data)")
        } catch {
            ServiceRunner.reportConfigurationError(program: "durable-host restore", error.message)
            throw ExitCode(1)
        }
    }
}

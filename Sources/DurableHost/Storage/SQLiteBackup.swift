import Foundation
import GRDB

/// Backup and restore of a host's SQLite storage, safe while the host serves writes.
///
/// A backup is SQLite's online backup of one read transaction (GRDB's `backup(to:)` in a
/// single step): a consistent snapshot holding every write committed, so every write
/// acknowledged, before it began, taken beside the running host (WAL mode lets a reader in
/// another process see the last commit without stopping the writer). It is written to a
/// temporary file, checked, synced and then renamed into place, so a backup file either is
/// whole or is not there. A restore copies a checked backup into an empty data directory the
/// same way; the host that starts on it migrates it if it was taken by an older version.
public enum SQLiteBackup {
    /// What a backup or restore did, for the command's one line.
    public struct Summary: Sendable, Hashable {
        public var sessions: Int
        public var bytes: Int
    }

    /// Copies the database of data directory `directory` to `file`, which must not exist.
    public static func backup(directory: String, to file: String) throws(StoreError) -> Summary {
        let source = SQLiteSessionStore.databasePath(in: directory)
        guard FileManager.default.fileExists(atPath: source) else {
            throw StoreError("\(directory) holds no database (no sessions.sqlite): is it a host's --data directory?")
        }
        guard !FileManager.default.fileExists(atPath: file) else {
            throw StoreError("\(file) already exists: a backup never overwrites a file; name a new one")
        }
        return try copy(from: source, to: file, what: "back up \(source)")
    }

    /// Brings backup `file` into data directory `directory`, which must hold no database.
    public static func restore(from file: String, into directory: String) throws(StoreError) -> Summary {
        guard FileManager.default.fileExists(atPath: file) else { throw StoreError("\(file) does not exist") }
        let destination = SQLiteSessionStore.databasePath(in: directory)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw StoreError("\(directory) is a file, not a data directory: name an empty directory") }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            guard entries.isEmpty else {
                let held = entries.contains { $0.hasPrefix("sessions.sqlite") } ? "already holds a database" : "is not empty"
                throw StoreError("\(directory) \(held): restore into an empty data directory (stop its host and move it aside first)")
            }
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create data directory \(directory): \(error.localizedDescription)")
        }
        try check(file)
        // The backup is only read: never opened for writing, so neither its bytes nor its
        // journal mode change, and read-only media will do.
        return try copy(from: file, to: destination, what: "restore \(file)", readOnlySource: true)
    }

    /// Refuses a file that is not a sound database of this program.
    private static func check(_ file: String) throws(StoreError) {
        do {
            var configuration = Configuration()
            configuration.readonly = true
            let queue = try DatabaseQueue(path: file, configuration: configuration)
            defer { try? queue.close() }
            try queue.read { db in
                guard try db.tableExists("sessions"), try db.tableExists("messages") else {
                    throw StoreError("\(file) is a SQLite database, but not a greptile-mcp host's (no sessions table)")
                }
                let verdict = try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "?"
                guard verdict == "ok" else { throw StoreError("\(file) is damaged (integrity check: \(verdict.prefix(200)))") }
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError("\(file) is not a SQLite database a host can use: \(error)")
        }
    }

    private static func copy(from source: String, to destination: String, what: String, readOnlySource: Bool = false) throws(StoreError) -> Summary {
        let partial = destination + ".partial-\(ProcessInfo.processInfo.processIdentifier)"
        do {
            // A live host's file is in WAL mode and read beside its writer (a pool); a backup is
            // a plain file, opened read-only.
            let reader: any DatabaseReader
            if readOnlySource {
                var configuration = Configuration()
                configuration.readonly = true
                reader = try DatabaseQueue(path: source, configuration: configuration)
            } else {
                reader = try DatabasePool(path: source)
            }
            defer { try? reader.close() }
            let target = try DatabaseQueue(path: partial)
            try reader.backup(to: target)
            let sessions = try target.read { db in
                try Int.fetchOne(db, sql: "SELECT count(*) FROM sessions WHERE id NOT LIKE '!%'") ?? 0
            }
            // A restored database is a plain file: the host turns WAL back on when it opens it.
            try target.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            try target.close()
            try sync(partial)
            try FileManager.default.moveItem(atPath: partial, toPath: destination)
            try sync((destination as NSString).deletingLastPathComponent)
            let size = (try FileManager.default.attributesOfItem(atPath: destination)[.size] as? NSNumber)?.intValue ?? 0
            return Summary(sessions: sessions, bytes: size)
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw StoreError("could not \(what): \(error)")
        }
    }

    /// fsync of a file or a directory: the copy (and its name) survive a power loss.
    private static func sync(_ path: String) throws {
        let descriptor = open(path.isEmpty ? "." : path, O_RDONLY)
        guard descriptor >= 0 else { throw StoreError("cannot open \(path) to sync it") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw StoreError("fsync of \(path) failed") }
    }
}

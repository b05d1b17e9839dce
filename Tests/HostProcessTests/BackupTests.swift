import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

/// Runs `durable-host ARGUMENTS` to its end: its exit status and what it printed.
private func durableHost(_ arguments: [String], in directory: TemporaryDirectory) async throws -> (status: Int32, output: String) {
    let process = try ServiceProcess(
        executable: BuiltProducts.path("durable-host"), arguments: arguments, logPath: directory.file("command-\(UUID().uuidString).log"))
    let status = try await process.waitForExit(timeout: .seconds(60))
    return (status, process.log)
}

@Suite("durable-host backup and restore, while the host serves writes")
struct BackupTests {
    @Test("a backup taken under a write load holds every write acknowledged before it began; a host restored from it serves them")
    func backupUnderLoad() async throws {
        let host = HostHarness()
        try await host.startServing()
        let client = host.client()
        let files = TemporaryDirectory("backup")
        let acknowledged = Mutexed<[(content: String, at: ContinuousClock.Instant)]>([])
        let stopped = Mutexed(false)
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for writer in 0..<8 {
                    group.addTask {
                        var index = 0
                        while !stopped.get() {
                            let content = "w\(writer)-\(index)"
                            let response = try? await client.send(
                                .post, "/sessions/backup-\(writer % 4)/update",
                                json: SessionUpdate(.appendMessage(MessageInput(role: .user, content: content)), principal: "alice"))
                            if response?.status == 200 { acknowledged.update { $0.append((content, .now)) } }
                            index += 1
                        }
                    }
                }
            }
        }
        // A whole suite may run beside this test: the load gets time to build.
        try await eventually("the load is running", timeout: .seconds(60)) { acknowledged.get().count >= 100 }
        let began = ContinuousClock.now
        let backup = try await durableHost(["backup", "--data", host.dataPath, "--to", files.file("sessions.backup")], in: files)
        #expect(backup.status == 0, "\(backup.output)")
        #expect(backup.output.contains("backed up 4 sessions"), "\(backup.output)")
        try await eventually("writes went on during and after the backup", timeout: .seconds(60)) {
            acknowledged.get().filter { $0.at > began }.count >= 50
        }
        stopped.set(true)
        await load.value
        await host.stop()

        let restored = HostHarness(dataPath: files.file("restored"))
        let restore = try await durableHost(["restore", "--from", files.file("sessions.backup"), "--data", restored.dataPath], in: files)
        #expect(restore.status == 0, "\(restore.output)")
        try await restored.startServing()
        var stored: [String] = []
        for id in 0..<4 {
            stored += try await restored.client().send(.get, "/sessions/backup-\(id)/history").decode(HostAPI.History.self).data.map(\.content)
        }
        let before = acknowledged.get().filter { $0.at < began }.map(\.content)
        let missing = Set(before).subtracting(stored)
        #expect(missing.isEmpty, "\(missing.count) writes acknowledged before the backup began are not in it, e.g. \(missing.prefix(3))")
        #expect(Set(stored).count == stored.count, "nothing twice")
        print("backup: \(before.count) writes acknowledged before it began, \(stored.count) in it, \(acknowledged.get().count) in all")
        let record = try await restored.client().send(.get, "/sessions/backup-0").decode(HostAPI.Record.self).data
        #expect(record.principal == "alice", "a session's principal comes back with it")
        // The restored host takes writes as any other.
        #expect(
            try await restored.client().send(
                .post, "/sessions/backup-0/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "after restore"))
            ).status == 200)
        await restored.stop()
    }

    @Test("backup and restore refuse what would lose or mix data, each with a sentence and exit status 1")
    func refusals() async throws {
        let host = HostHarness()
        try await host.startServing()
        _ = try await host.client().send(.post, "/sessions/s/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "x")))
        let files = TemporaryDirectory("backup")
        #expect(try await durableHost(["backup", "--data", host.dataPath, "--to", files.file("one")], in: files).status == 0)
        let again = try await durableHost(["backup", "--data", host.dataPath, "--to", files.file("one")], in: files)
        #expect(again.status == 1 && again.output.contains("already exists"), "\(again.output)")
        let nowhere = try await durableHost(["backup", "--data", files.file("no-such-dir"), "--to", files.file("two")], in: files)
        #expect(nowhere.status == 1 && nowhere.output.contains("holds no database"), "\(nowhere.output)")
        let occupied = try await durableHost(["restore", "--from", files.file("one"), "--data", host.dataPath], in: files)
        #expect(occupied.status == 1 && occupied.output.contains("already holds a database"), "\(occupied.output)")
        try Data("not a database".utf8).write(to: URL(fileURLWithPath: files.file("junk")))
        let junk = try await durableHost(["restore", "--from", files.file("junk"), "--data", files.file("fresh")], in: files)
        #expect(junk.status == 1 && junk.output.contains("not a SQLite database"), "\(junk.output)")
        #expect(!FileManager.default.fileExists(atPath: files.file("fresh/sessions.sqlite")), "a refused restore leaves nothing behind")
        #expect(try await host.client().send(.get, "/sessions/s/history").decode(HostAPI.History.self).data.count == 1, "the host is untouched")
        await host.stop()
    }

    @Test("a restore only reads its backup: the file stays byte for byte as it was, nothing is left beside it, and one on read-only media restores")
    func restoreLeavesItsSourceAlone() async throws {
        let host = HostHarness()
        try await host.startServing()
        for index in 0..<3 {
            _ = try await host.client().send(
                .post, "/sessions/kept-\(index)/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "message \(index)")))
        }
        let files = TemporaryDirectory("restore")
        let backup = files.file("sessions.backup")
        #expect(try await durableHost(["backup", "--data", host.dataPath, "--to", backup], in: files).status == 0)
        // A second backup, on a file system mounted read-only once it is written.
        let disk = try SmallDisk(megabytes: 16)
        defer { disk.remove() }
        let kept = disk.directory.file("kept.backup")
        #expect(try await durableHost(["backup", "--data", host.dataPath, "--to", kept], in: files).status == 0)
        await host.stop()
        try disk.makeReadOnly()
        let original = try Data(contentsOf: URL(fileURLWithPath: backup))
        let listing = try FileManager.default.contentsOfDirectory(atPath: files.path).sorted()

        let first = try await durableHost(["restore", "--from", backup, "--data", files.file("first")], in: files)
        #expect(first.status == 0, "\(first.output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: backup)) == original, "the backup is byte for byte what it was")
        let beside = try FileManager.default.contentsOfDirectory(atPath: files.path).filter { !listing.contains($0) && !$0.hasPrefix("command-") }
        #expect(beside == ["first"], "no -wal, -shm or journal left beside the backup: \(beside)")

        let second = try await durableHost(["restore", "--from", kept, "--data", files.file("second")], in: files)
        #expect(second.status == 0, "a backup on read-only media restores: \(second.output)")
        let restored = HostHarness(dataPath: files.file("second"))
        try await restored.startServing()
        let contents = try await restored.client().send(.get, "/sessions/kept-2/history").decode(HostAPI.History.self).data.map(\.content)
        #expect(contents == ["message 2"])
        await restored.stop()
    }

    @Test("restore refuses a data directory that is not empty, and leaves what is in it alone")
    func restoreNeedsAnEmptyDirectory() async throws {
        let host = HostHarness()
        try await host.startServing()
        _ = try await host.client().send(.post, "/sessions/s/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "x")))
        let files = TemporaryDirectory("restore")
        #expect(try await durableHost(["backup", "--data", host.dataPath, "--to", files.file("one")], in: files).status == 0)
        await host.stop()
        try FileManager.default.createDirectory(atPath: files.file("occupied"), withIntermediateDirectories: true)
        try Data("someone's notes".utf8).write(to: URL(fileURLWithPath: files.file("occupied/notes.txt")))
        let refused = try await durableHost(["restore", "--from", files.file("one"), "--data", files.file("occupied")], in: files)
        #expect(refused.status == 1 && refused.output.contains("is not empty"), "\(refused.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: files.file("occupied")) == ["notes.txt"], "nothing was added")
        let empty = try await durableHost(["restore", "--from", files.file("one"), "--data", files.file("empty-but-there")], in: files)
        #expect(empty.status == 0, "an empty or new directory is fine: \(empty.output)")
    }
}

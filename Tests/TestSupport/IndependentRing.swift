import Foundation

/// The ring's placement as computed by an independent implementation
/// (`Tests/Fixtures/ring_owners.py`), so that a test does not trust the product's own
/// `HashRing` to say which host owns an id.
public enum IndependentRing {
    public struct Placement: Sendable, Equatable {
        public let owner: String
        public let runnerUp: String?

        public init(owner: String, runnerUp: String?) {
            self.owner = owner
            self.runnerUp = runnerUp
        }
    }

    /// The owner and runner-up of each of `ids` among `nodes`.
    public static func placements(of ids: [String], nodes: [String]) async throws -> [String: Placement] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/ring_owners.py").path
        let directory = TemporaryDirectory("ring-owners")
        let process = try ServiceProcess(
            executable: "/usr/bin/env", arguments: ["python3", script, "--nodes", nodes.joined(separator: ",")] + ids,
            logPath: directory.file("owners.txt"))
        guard try await process.waitForExit() == 0 else {
            throw ServiceProcess.Failure(description: "ring_owners.py failed:\n\(process.log)")
        }
        var placements: [String: Placement] = [:]
        for line in process.log.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count == 3 else { continue }
            placements[fields[0]] = Placement(owner: fields[1], runnerUp: fields[2] == "-" ? nil : fields[2])
        }
        guard placements.count == Set(ids).count else {
            throw ServiceProcess.Failure(description: "ring_owners.py placed \(placements.count) of \(Set(ids).count) ids:\n\(process.log)")
        }
        return placements
    }
}

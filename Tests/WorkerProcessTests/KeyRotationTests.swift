import CurlHTTP
import Foundation
import TestSupport
import Testing

@Suite("Client keys rotated without a restart")
struct KeyRotationTests {
    /// Whether `key` may start a session on `worker`.
    static func accepted(_ key: String, by worker: String) async throws -> Bool {
        var client = MCPTestClient(base: worker, apiKey: key)
        do {
            try await client.initialize()
            return true
        } catch {
            return false
        }
    }

    static func write(_ text: String, to path: String) throws {
        // Written whole and renamed, as an operator's tooling would: never half a file.
        try text.write(toFile: path + ".new", atomically: false, encoding: .utf8)
        _ = rename(path + ".new", path)
    }

    @Test("a changed api_keys_file is in force within its reload interval: a new key works, a removed one is 401, sessions carry on")
    func rotationByPolling() async throws {
        let directory = TemporaryDirectory("keys")
        let path = directory.file("api-keys")
        let (old, new, bob) = ("alice-old-key-0123456789", "alice-new-key-0123456789", "bob-key-0123456789abcdef")
        try Self.write("alice:\(old)\n", to: path)
        let stack = try await WorkerStack.start(workerArguments: ["--api-keys-file", path, "--api-keys-reload-interval", "0.2"])
        var session = MCPTestClient(base: stack.worker.base, apiKey: old)
        try await session.initialize()
        #expect(try await !Self.accepted(new, by: stack.worker.base))

        try Self.write("# rotated\nalice:\(new)\nbob:\(bob)\n", to: path)
        try await eventually("the new keys are in force") { try await Self.accepted(new, by: stack.worker.base) }
        #expect(try await !Self.accepted(old, by: stack.worker.base), "the old key is refused")
        #expect(try await Self.accepted(bob, by: stack.worker.base), "a principal added is let in")
        session.apiKey = new
        #expect(try await session.request("ping")["result"] != nil, "alice's session is alice's, whichever of her keys she sends")
        #expect(stack.worker.logs.contains("client keys reloaded"))

        // A file that cannot be used changes nothing, and says so.
        try Self.write("this is not a keys file\n", to: path)
        try await eventually("the broken file is refused") { stack.worker.logs.contains("cannot be used; the keys in use are kept") }
        #expect(try await Self.accepted(new, by: stack.worker.base))
        try Self.write("", to: path)
        try await eventually("the empty file is refused") { stack.worker.logs.contains("holds no NAME:KEY line") }
        #expect(try await Self.accepted(bob, by: stack.worker.base), "an empty file would have opened the worker to no one, or to anyone")
        session.sessionID = nil
        await stack.stop()
    }

    @Test("SIGHUP puts a changed api_keys_file in force at once")
    func rotationBySignal() async throws {
        let directory = TemporaryDirectory("keys")
        let path = directory.file("api-keys")
        try Self.write("alice:alice-first-key-0123456\n", to: path)
        let stack = try await WorkerStack.start(workerArguments: ["--api-keys-file", path, "--api-keys-reload-interval", "3600"])
        try Self.write("alice:alice-second-key-012345\n", to: path)
        #expect(try await !Self.accepted("alice-second-key-012345", by: stack.worker.base), "not before the signal (the interval is an hour)")
        stack.worker.process.signal(SIGHUP)
        try await eventually("SIGHUP reloaded the keys") { try await Self.accepted("alice-second-key-012345", by: stack.worker.base) }
        #expect(stack.worker.process.exitStatus == nil, "SIGHUP does not stop the worker")
        await stack.stop()
    }
}

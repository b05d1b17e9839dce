import Foundation
import Synchronization
import TestSupport
import Testing

@testable import CurlHTTP

@Suite("CurlClient against a real local server")
struct CurlClientTests {
    @Test("method, headers and a binary body arrive intact; the response carries status, headers and body")
    func echo() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        let body = Data((0..<1000).map { UInt8($0 % 256) })
        let response = try await client.execute(
            HTTPRequest(
                method: .put, url: server.base + "/echo?x=1", headers: ["X-Test": "value", "Content-Type": "application/octet-stream"], body: body))
        #expect(response.status == 200)
        #expect(response.headers["content-type"] == "application/json")
        let echoed = response.object
        #expect(echoed["method"] as? String == "PUT")
        #expect(echoed["path"] as? String == "/echo?x=1")
        #expect((echoed["headers"] as? [String: String])?["x-test"] == "value")
        #expect((echoed["headers"] as? [String: String])?["user-agent"] == "greptile-mcp")
        #expect(echoed["length"] as? Int == 1000)
        #expect(Data((echoed["body"] as? String ?? "").unicodeScalars.map { UInt8($0.value) }) == body)

        for method in [HTTPRequest.Method.get, .post, .delete, .patch] {
            let answer = try await client.execute(HTTPRequest(method: method, url: server.base + "/echo"))
            #expect(answer.object["method"] as? String == method.rawValue)
        }
        let head = try await client.execute(HTTPRequest(method: .head, url: server.base + "/echo"))
        #expect(head.status == 200 && head.body.isEmpty)
        await server.stop()
    }

    @Test("any HTTP status is a response, not an error")
    func statuses() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        for status in [201, 404, 429, 500, 503] {
            #expect(try await client.execute(HTTPRequest(url: server.base + "/status/\(status)")).status == status)
        }
        await server.stop()
    }

    @Test("sequential requests to one origin reuse one kept-alive connection")
    func keepAlive() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        let before = try await server.connections()
        var reused: [Bool] = []
        for _ in 0..<20 {
            reused.append(try await client.execute(HTTPRequest(url: server.base + "/echo")).reusedConnection)
        }
        let opened = try await server.connections() - before - 1  // the counting request's own connection
        #expect(opened == 1, "20 requests opened \(opened) connections")
        #expect(reused.first == false)
        #expect(reused.dropFirst().allSatisfy { $0 })
        await server.stop()
    }

    @Test("a kept-alive connection the server closes while idle is not waited on, and the next request opens another")
    func serverClosesIdleConnection() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        let first = try await client.execute(HTTPRequest(url: server.base + "/echo?hangup=1"))
        #expect(first.status == 200)
        // The server's close reaches the idle socket, which the loop still watches (it keeps a
        // connection's socket watched between requests): it must stop watching it, not spin.
        try await Task.sleep(for: .milliseconds(300))
        let before = client.loop.wakeups.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(500))
        let woke = client.loop.wakeups.load(ordering: .relaxed) - before
        #expect(woke <= 10, "the idle loop woke \(woke) times in 500 ms")
        let second = try await client.execute(HTTPRequest(url: server.base + "/echo", timeout: .seconds(5)))
        #expect(second.status == 200)
        #expect(!second.reusedConnection)
        await server.stop()
    }

    @Test("requests each on a connection the server closes all succeed, each socket watched afresh")
    func connectionPerRequest() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        let before = try await server.connections()
        for index in 0..<30 {
            // Each new socket is likely to get the number of the one closed before it.
            let path = index % 2 == 0 ? "/echo?close=1&n=\(index)" : "/echo?hangup=1&n=\(index)"
            let response = try await client.execute(HTTPRequest(url: server.base + path, timeout: .seconds(5)))
            #expect(response.object["path"] as? String == path)
            #expect(!response.reusedConnection)
        }
        let opened = try await server.connections() - before - 1  // the counting request's own connection
        #expect(opened == 30)
        await server.stop()
    }

    @Test("the total timeout ends a slow exchange with a timed-out error")
    func totalTimeout() async throws {
        let server = try await UpstreamStandIn.start()
        let start = ContinuousClock.now
        do {
            _ = try await CurlClient().execute(HTTPRequest(url: server.base + "/slow?ms=60000", timeout: .milliseconds(300)))
            Issue.record("the slow request did not time out")
        } catch let error as CurlError {
            #expect(error.isTimedOut, "\(error)")
        }
        // Ended by the timeout, long before the answer would have come (not a speed check).
        #expect(ContinuousClock.now - start < .seconds(30))
        await server.stop()
    }

    @Test("nothing listening is a could-not-connect error naming the host")
    func refused() async throws {
        do {
            _ = try await CurlClient().execute(HTTPRequest(url: "http://127.0.0.1:1/health"))
            Issue.record("a request to a closed port succeeded")
        } catch let error as CurlError {
            #expect(error.isCouldNotConnect)
            #expect(error.message.contains("127.0.0.1"))
        }
    }

    @Test("a URL that is not http or https is refused before anything is sent")
    func invalidURL() async throws {
        await #expect(throws: CurlError.self) {
            _ = try await CurlClient().execute(HTTPRequest(url: "ftp://example.com/x"))
        }
        await #expect(throws: CurlError.self) {
            _ = try await CurlClient().execute(HTTPRequest(url: "http://127.0.0.1:1/x", headers: ["Bad\r\nHeader": "v"]))
        }
    }

    @Test("cancelling the task aborts the transfer: the server sees the connection closed before it could answer")
    func cancellation() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        let task = Task { try await client.execute(HTTPRequest(url: server.base + "/slow?ms=20000", timeout: nil)) }
        let received = try await eventually("the request reached the server") {
            try await server.requests(to: "/slow").first?["time"] as? Double
        }
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
        // Aborted, not waited out: the server noticed the client leave long before its answer.
        let left = try await server.disconnect(from: "/slow", after: received)
        #expect(left - received < 15, "the transfer was closed \(left - received) s into a 20 s answer")
        // The client is still usable afterwards.
        #expect(try await client.execute(HTTPRequest(url: server.base + "/echo")).status == 200)
        await server.stop()
    }

    @Test("a streamed body arrives event by event, before the response has finished")
    func streaming() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        // An endless stream: events can only be read if they are delivered as they come.
        let response = try await client.stream(HTTPRequest(url: server.base + "/stream?chunks=0&interval_ms=20", timeout: nil))
        #expect(response.status == 200)
        #expect(response.headers["Content-Type"] == "text/event-stream")
        var events: [ServerSentEvent] = []
        for try await event in response.body.serverSentEvents {
            events.append(event)
            if events.count == 5 { break }
        }
        #expect(events.map(\.data) == (0..<5).map { #"{"index": \#($0)}"# })
        #expect(events.map(\.id) == (0..<5).map { String($0) })
        await server.stop()
    }

    @Test("a large streamed body read slowly is paused, resumed and delivered whole")
    func backpressure() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient(configuration: .init(streamHighWater: 64 * 1024))
        let size = 8 * 1024 * 1024
        let response = try await client.stream(HTTPRequest(url: server.base + "/big?bytes=\(size)", timeout: nil))
        var received = 0
        var intact = true
        var chunks = 0
        for try await chunk in response.body {
            for (offset, byte) in chunk.enumerated() where byte != UInt8((received + offset) % 256) {
                intact = false
                break
            }
            received += chunk.count
            chunks += 1
            if chunks % 16 == 0 { try await Task.sleep(for: .milliseconds(1)) }
        }
        #expect(received == size)
        #expect(intact)
        await server.stop()
    }

    @Test("dropping a stream, or cancelling its reader, closes the upstream connection")
    func abandonedStream() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        do {
            let response = try await client.stream(HTTPRequest(url: server.base + "/stream?chunks=0&interval_ms=50", timeout: nil))
            var iterator = response.body.makeAsyncIterator()
            _ = try await iterator.next()
        }
        try await eventually("the stand-in saw the abandoned stream close") { try await server.events().count == 1 }

        let reader = Task {
            let response = try await client.stream(HTTPRequest(url: server.base + "/stream?chunks=0&interval_ms=50", timeout: nil))
            for try await _ in response.body {}
        }
        try await eventually("the second stream reached the server") { try await server.requests(to: "/stream").count == 2 }
        reader.cancel()
        _ = await reader.result
        try await eventually("cancelling the reader closed the upstream connection") { try await server.events().count == 2 }
        await server.stop()
    }

    @Test("many concurrent requests all complete with their own answers")
    func concurrency() async throws {
        let server = try await UpstreamStandIn.start()
        let client = CurlClient()
        let paths = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for index in 0..<200 {
                group.addTask {
                    let response = try await client.execute(HTTPRequest(url: server.base + "/echo?n=\(index)"))
                    return (index, response.object["path"] as? String)
                }
            }
            return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
        }
        #expect(paths.count == 200)
        #expect(paths.allSatisfy { $0.value == "/echo?n=\($0.key)" })
        await server.stop()
    }

    @Test("after shutdown, requests fail with a shut-down error instead of hanging")
    func shutdown() async throws {
        let client = CurlClient()
        client.shutdown()
        do {
            _ = try await client.execute(HTTPRequest(url: "http://127.0.0.1:1/"))
            Issue.record("a request after shutdown succeeded")
        } catch let error as CurlError {
            #expect(error.isShutDown)
        }
    }
}

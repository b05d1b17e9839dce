import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

/// Hostile and unusual input to a `durable-host` process: what it keeps, byte for byte, and
/// what it refuses, with a clear error and no change.
@Suite("durable-host input: content kept byte for byte, strict JSON, slow clients cut off")
struct HostInputTests {
    /// Contents that a C string, a lossy decoder or a length limit would damage.
    static let hardContents: [String] = [
        "abc\u{0}def",
        "\u{0}secret",
        "trailing\u{0}",
        // Every plane: the Basic Multilingual Plane, the Supplementary Multilingual (emoji,
        // Linear B), Ideographic, Tertiary Ideographic, Special-purpose and both private ones.
        "BMP é 漢字 \u{FFFD} \u{FEFF}inside",
        "SMP 😀 \u{10000} \u{1F9D1}\u{200D}\u{1F4BB}",
        "SIP \u{20000} \u{2A6D6}",
        "TIP \u{30000}",
        "SSP \u{E0001}\u{E0020}",
        "PUA \u{F0000} \u{10FFFD}",
        "controls \u{1}\u{8}\u{1F}\u{7F} and \r\n\t",
    ]

    @Test(
        "NUL bytes, every Unicode plane and a 256 KiB content round-trip byte for byte across a restart, by append, append_messages and set_history",
        arguments: StorageBackend.allCases)
    func contentRoundTripsAcrossRestart(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend)
        try await host.startServing()
        let client = host.client()
        let large = String(repeating: "0123456789abcdef", count: 16 * 1024)  // 256 KiB exactly: the default limit
        #expect(large.utf8.count == 262_144)
        var expected: [String] = []
        for content in Self.hardContents + [large] {
            let response = try await client.send(
                .post, "/sessions/bytes/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: content)),
                headers: ["Idempotency-Key": "k-\(expected.count)"])
            #expect(response.status == 200, "\(response.text)")
            expected.append(content)
        }
        let turn = [MessageInput(role: .user, content: "q\u{0}1"), MessageInput(role: .assistant, content: "a\u{0}1 😀")]
        #expect(try await client.send(.post, "/sessions/bytes/update", json: SessionOperation.appendMessages(turn)).status == 200)
        expected += turn.map(\.content)
        let replaced = Self.hardContents.map { MessageInput(role: .system, content: $0) }
        #expect(try await client.send(.post, "/sessions/replaced/update", json: SessionOperation.setHistory(replaced)).status == 200)

        // A retry of an acknowledged write is answered, not applied again.
        let retry = try await client.send(
            .post, "/sessions/bytes/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: Self.hardContents[0])),
            headers: ["Idempotency-Key": "k-0"])
        #expect(retry.headers["Idempotent-Replayed"] == "true")

        await host.stop()
        try await host.startServing()
        let stored = try await host.client().send(.get, "/sessions/bytes/history").decode(HostAPI.History.self).data.map(\.content)
        #expect(stored.count == expected.count)
        for (index, (got, want)) in zip(stored, expected).enumerated() {
            #expect(Array(got.utf8) == Array(want.utf8), "message \(index): \(got.utf8.count) bytes back of \(want.utf8.count)")
        }
        let storedReplaced = try await host.client().send(.get, "/sessions/replaced").decode(HostAPI.Record.self).data.messages
        #expect(storedReplaced.map { Array($0.content.utf8) } == replaced.map { Array($0.content.utf8) })
        await host.stop()
        await cluster?.stop()
    }

    @Test(
        "text that is not UTF-8 JSON without repeated keys, or holds a lone surrogate or an integer beyond 64 bits, is refused with a reason and changes nothing",
        arguments: StorageBackend.allCases)
    func strictJSON(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend)
        try await host.startServing()
        let client = host.client()
        _ = try await client.send(.post, "/sessions/s/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "keep me")))
        let before = try await client.send(.get, "/sessions/s").body

        let append = #"{"operation":"append_message","message":{"role":"user","content":"x"}}"#
        let bodies: [(String, Data, String)] = [
            ("a lone high surrogate", Data(#"{"operation":"append_message","message":{"role":"user","content":"a\ud800b"}}"#.utf8), "lone surrogate"),
            ("a lone low surrogate", Data(#"{"operation":"append_message","message":{"role":"user","content":"\udc00"}}"#.utf8), "lone surrogate"),
            (
                "a repeated key", Data(#"{"operation":"append_message","operation":"set_history","message":{"role":"user","content":"x"}}"#.utf8),
                "appears twice"
            ),
            ("a repeated nested key", Data(#"{"operation":"append_message","message":{"role":"user","content":"x","content":"y"}}"#.utf8), "appears twice"),
            (
                "an integer beyond 64 bits", Data(#"{"operation":"update_metadata","metadata":{"n":123456789012345678901234567890}}"#.utf8),
                "does not fit in 64 bits"
            ),
            ("a byte order mark", Data([0xEF, 0xBB, 0xBF]) + Data(append.utf8), "byte order mark"),
            ("UTF-16", append.data(using: .utf16LittleEndian)!, "UTF-8"),
            (
                "invalid UTF-8", Data(#"{"operation":"append_message","message":{"role":"user","content":""#.utf8) + Data([0xC3, 0x28]) + Data(#""}}"#.utf8),
                "not UTF-8"
            ),
        ]
        for (name, body, reason) in bodies {
            let response = try await client.send(.post, "/sessions/s/update", body: body, headers: ["Content-Type": "application/json"])
            #expect(response.status == 400, "\(name): \(response.text)")
            #expect(response.errorCode == "invalid_json", "\(name): \(response.text)")
            let message = ((response.object["error"] as? [String: Any])?["message"] as? String) ?? ""
            #expect(message.contains(reason), "\(name): \(response.text)")
        }
        #expect(try await client.send(.get, "/sessions/s").body == before, "no refused body changed the session")

        // The largest and smallest 64-bit integers are kept exactly.
        let exact = #"{"operation":"update_metadata","metadata":{"max":9223372036854775807,"min":-9223372036854775808}}"#
        #expect(try await client.send(.post, "/sessions/s/update", text: exact).status == 200)
        let metadata = try await client.send(.get, "/sessions/s/history").decode(HostAPI.History.self).metadata
        #expect(metadata["max"] == .int(.max) && metadata["min"] == .int(.min))
        await host.stop()
        await cluster?.stop()
    }

    @Test("the Bearer scheme is matched without regard to case")
    func bearerIsCaseInsensitive() async throws {
        let host = HostHarness(environment: ["DURABLE_HOST_TOKEN": "s3cret-token"])
        try await host.start()
        for header in ["Bearer s3cret-token", "bearer s3cret-token", "BEARER  s3cret-token"] {
            let client = JSONClient(base: host.base, headers: ["Authorization": header])
            #expect(try await client.send(.get, "/sessions/a/history").status == 200, "\(header)")
        }
        for header in ["Bearer wrong", "Basic s3cret-token", "Bearers3cret-token", "bearer"] {
            let client = JSONClient(base: host.base, headers: ["Authorization": header])
            #expect(try await client.send(.get, "/sessions/a/history").status == 401, "\(header)")
        }
        await host.stop()
    }

    @Test("a client that sends its request one byte at a time is cut off after the read timeout")
    func slowClientIsCutOff() async throws {
        let host = HostHarness(arguments: ["--request-read-timeout", "1"])
        try await host.start()
        let closedAfter = try await SlowConnection.headerBytesBeforeCutOff(port: host.port)
        // Sent one byte every 200 ms, the request would take 40 s to arrive; the host closes
        // the connection once the 1 s read timeout has passed (with slack for a loaded machine).
        let sentBytes = try #require(closedAfter, "the host never closed the slow connection")
        #expect(sentBytes < 60, "the connection stayed open for \(sentBytes) bytes")
        // Meanwhile everyone else is served.
        #expect(try await host.client().send(.get, "/health").status == 200)
        await host.stop()
    }

    @Test("a kept-alive connection whose requests each arrive in time stays open past the read timeout; a slow request on it is cut off")
    func keptAliveConnectionThenSlowRequest() async throws {
        let host = HostHarness(arguments: ["--request-read-timeout", "2"])
        try await host.start()
        let connection = try SlowConnection(port: host.port)
        defer { connection.close() }
        // Requests one after another for 2.5 read timeouts, each arriving in three parts over
        // half a second: always one under way, each in time. The connection's timer, armed by
        // the first, fires while a later one arrives, and must not cut it off. The client paces
        // on a thread of its own: a busy test run's cooperative pool would stretch its sleeps.
        let (sent, answered, slowest) = await withCheckedContinuation { (done: CheckedContinuation<(Int, Int, Duration), Never>) in
            let thread = Thread {
                var (sent, answered, slowest) = (0, 0, Duration.zero)
                let started = ContinuousClock.now
                while ContinuousClock.now - started < .seconds(5) {
                    let begun = ContinuousClock.now
                    for part in ["GET /health HTTP/1.1\r\n", "Host: x\r\n", "\r\n"] {
                        connection.write(Array(part.utf8))
                        if part != "\r\n" { Thread.sleep(forTimeInterval: 0.25) }
                    }
                    slowest = max(slowest, ContinuousClock.now - begun)
                    sent += 1
                    answered = connection.awaitResponses(sent)
                    if answered < sent { break }
                }
                done.resume(returning: (sent, answered, slowest))
            }
            thread.start()
        }
        try #require(slowest < .milliseconds(1_800), "the client took \(slowest) to send one request: too slow to show anything")
        #expect(answered == sent, "\(answered) of \(sent) requests answered")
        #expect(sent >= 5)
        #expect(!connection.isClosedByPeer)
        // Then a request that trickles in is cut off, a read timeout after its first byte.
        let slow = Array("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 200)
        let cutAfter = try await connection.trickle(slow, every: .milliseconds(200))
        let bytes = try #require(cutAfter, "the host never closed the slow request's connection")
        #expect(bytes < 60, "the connection stayed open for \(bytes) bytes")
        await host.stop()
    }
}

import CurlHTTP
import Testing

@Suite("Server-Sent Events parsing")
struct ServerSentEventParserTests {
    @Test("fields, multi-line data, comments and the blank line that ends an event")
    func fields() {
        var parser = ServerSentEventParser()
        let events = parser.feed(Array(": comment\nid: 7\nevent: message\ndata: first\ndata: second\nretry: 1500\n\ndata:no-space\n\n".utf8))
        #expect(
            events == [
                ServerSentEvent(id: "7", event: "message", data: "first\nsecond", retry: 1500),
                ServerSentEvent(data: "no-space"),
            ])
    }

    @Test("events split at any byte, and CRLF or CR line ends, parse the same")
    func boundaries() {
        let text = "id: 1\r\ndata: {\"a\":1}\r\n\r\nid: 2\rdata: b\r\r"
        let expected = [ServerSentEvent(id: "1", data: #"{"a":1}"#), ServerSentEvent(id: "2", data: "b")]
        for split in 0...text.utf8.count {
            var parser = ServerSentEventParser()
            let bytes = Array(text.utf8)
            let events = parser.feed(bytes[..<split]) + parser.feed(bytes[split...])
            #expect(events == expected, "split at \(split)")
        }
    }

    @Test("an event without its closing blank line is not delivered")
    func unterminated() {
        var parser = ServerSentEventParser()
        #expect(parser.feed(Array("data: partial\n".utf8)).isEmpty)
        parser.finish()
        #expect(parser.feed(Array("\n".utf8)).isEmpty)
    }
}

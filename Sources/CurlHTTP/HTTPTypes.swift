import Foundation

/// An outbound HTTP request.
public struct HTTPRequest: Sendable {
    public enum Method: String, Sendable {
        case get = "GET", post = "POST", put = "PUT", patch = "PATCH", delete = "DELETE", head = "HEAD"
    }

    public var method: Method
    public var url: String
    public var headers: HTTPHeaders
    public var body: Data?
    /// Limit on the whole exchange; nil for none (a stream that may run for minutes).
    public var timeout: Duration?
    /// Limit on establishing the connection.
    public var connectTimeout: Duration
    /// CA certificates (a PEM file) to verify the server with, instead of the system's.
    public var caFile: String?
    /// Connect to this address (`IP` or `[IPv6]`) instead of resolving the URL's host, on a new
    /// connection never reused: a host checked once cannot resolve elsewhere afterwards.
    public var pinnedAddress: String?
    /// The largest response body taken whole; a longer one fails the transfer.
    public var maxResponseBytes: Int?

    public init(
        method: Method = .get,
        url: String,
        headers: HTTPHeaders = [:],
        body: Data? = nil,
        timeout: Duration? = .seconds(30),
        connectTimeout: Duration = .seconds(5)
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
    }
}

/// Header fields in order, looked up without regard to case.
public struct HTTPHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [Field]

    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: String
    }

    public init(_ fields: [(String, String)] = []) {
        self.fields = fields.map { Field(name: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The first value of a header, or nil.
    public subscript(name: String) -> String? {
        fields.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// Every value of a header, in order.
    public func values(_ name: String) -> [String] {
        fields.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Replaces every value of `name` with one.
    public mutating func set(_ name: String, _ value: String) {
        fields.removeAll { $0.name.caseInsensitiveCompare(name) == .orderedSame }
        fields.append(Field(name: name, value: value))
    }

    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }
}

/// A whole response, its body collected.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: Data
    /// Whether the exchange went over a connection already open (keep-alive).
    public var reusedConnection: Bool

    public init(status: Int, headers: HTTPHeaders, body: Data, reusedConnection: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.reusedConnection = reusedConnection
    }

    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A response whose head has arrived and whose body arrives as it is produced.
public struct HTTPStreamingResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// The body, chunk by chunk. Dropping it, or cancelling the task reading it, aborts the transfer.
    public var body: HTTPBodyStream
}

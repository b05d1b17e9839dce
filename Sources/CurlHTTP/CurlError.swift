/// Why an HTTP exchange failed before a response was complete.
public struct CurlError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Kind: Sendable, Hashable {
        case couldNotConnect
        case timedOut
        case invalidRequest
        case transport
        case shutDown
    }

    private let kind: Kind
    /// libcurl's words for it, with the URL's host when known.
    public let message: String
    /// libcurl's CURLcode, or 0 when the failure was not libcurl's.
    public let curlCode: Int

    private init(_ kind: Kind, _ message: String, curlCode: Int = 0) {
        self.kind = kind
        self.message = message
        self.curlCode = curlCode
    }

    /// Nothing listened at the address, or the name did not resolve.
    public static func couldNotConnect(_ message: String, curlCode: Int) -> CurlError {
        CurlError(.couldNotConnect, message, curlCode: curlCode)
    }
    /// The connect timeout or the total timeout ran out.
    public static func timedOut(_ message: String, curlCode: Int) -> CurlError {
        CurlError(.timedOut, message, curlCode: curlCode)
    }
    /// The request itself was unusable (a bad URL, say).
    public static func invalidRequest(_ message: String, curlCode: Int = 0) -> CurlError {
        CurlError(.invalidRequest, message, curlCode: curlCode)
    }
    /// Anything else on the way: connection reset, TLS failure, malformed response.
    public static func transport(_ message: String, curlCode: Int) -> CurlError {
        CurlError(.transport, message, curlCode: curlCode)
    }
    /// The client was shut down with the exchange still under way.
    public static let shutDown = CurlError(.shutDown, "the HTTP client was shut down")

    public var isCouldNotConnect: Bool { kind == .couldNotConnect }
    public var isTimedOut: Bool { kind == .timedOut }
    public var isShutDown: Bool { kind == .shutDown }

    public static func == (lhs: CurlError, rhs: CurlError) -> Bool { lhs.kind == rhs.kind }
    public func hash(into hasher: inout Hasher) { hasher.combine(kind) }

    public var description: String { message }
}

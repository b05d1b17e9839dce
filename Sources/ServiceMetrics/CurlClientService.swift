import CurlHTTP
import ServiceLifecycle

/// Keeps a libcurl client's thread running until the rest of the group has stopped; put it
/// first in a group, so it stops last.
public struct CurlClientService: Service {
    public let client: CurlClient

    public init(client: CurlClient) {
        self.client = client
    }

    public func run() async throws {
        try? await gracefulShutdown()
        client.shutdown()
    }
}

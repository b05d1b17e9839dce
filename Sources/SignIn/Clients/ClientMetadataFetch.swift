import CurlHTTP
import Foundation
import SessionModel

/// Fetching a Client ID Metadata Document: the `client_id` is an https URL whose JSON this
/// server fetches, a request a stranger can make it send. So the URL is https with a path, the
/// host is resolved here and must be a public address (unless `allowPrivate`), the connection
/// goes to exactly that address, no redirect is followed, the body is at most `maxBytes` and the
/// whole fetch at most `timeout`.
struct ClientMetadataFetch: Sendable {
    let client: CurlClient
    let allowPrivate: Bool
    let maxBytes: Int
    let timeout: Duration
    let caFile: String?

    /// The client the document describes, or why it cannot be used (a sentence for the person).
    func client(at url: String) async -> Result<RegisteredClient, RegistrationRefusal> {
        guard let parts = URLComponents(string: url), parts.scheme == "https", let host = parts.host, !host.isEmpty, !parts.path.isEmpty,
            parts.path != "/", parts.fragment == nil, parts.user == nil, url.utf8.count <= 2_000
        else {
            return .failure(Self.refused("client_id \(url.prefix(100)) is not an https URL with a path"))
        }
        let addresses = await AddressPolicy.resolve(host)
        guard let address = addresses.first(where: { allowPrivate || AddressPolicy.isPublic($0) }) else {
            return .failure(
                Self.refused(
                    addresses.isEmpty
                        ? "the host of client_id \(url.prefix(100)) does not resolve"
                        : "the host of client_id \(url.prefix(100)) is a private or loopback address, which this server does not fetch from"))
        }
        var request = HTTPRequest(
            url: url, headers: ["Accept": "application/json"], timeout: timeout, connectTimeout: min(timeout, .seconds(3)))
        request.pinnedAddress = address.contains(":") ? "[\(address)]" : address
        request.maxResponseBytes = maxBytes
        request.caFile = caFile
        let response: HTTPResponse
        do {
            response = try await client.execute(request)
        } catch {
            return .failure(Self.refused("the client metadata document at \(url.prefix(100)) could not be fetched: \(error)"))
        }
        guard response.status == 200 else {
            return .failure(Self.refused("the client metadata document at \(url.prefix(100)) answered HTTP \(response.status)"))
        }
        guard let document = try? JSONValue.parseStrictly(response.body) else {
            return .failure(Self.refused("the client metadata document at \(url.prefix(100)) is not JSON"))
        }
        do {
            return .success(try ClientMetadata.document(document, url: url))
        } catch {
            return .failure(error)
        }
    }

    static func refused(_ description: String) -> RegistrationRefusal {
        RegistrationRefusal(error: "invalid_client_metadata", description: description)
    }
}

/// Which addresses a server fetching on a stranger's word may connect to.
enum AddressPolicy {
    /// Whether `address` (IPv4 dotted or IPv6 text) is on the public internet: not loopback,
    /// private (RFC 1918, RFC 4193), link-local, shared (RFC 6598), unspecified, multicast or
    /// reserved, and not an IPv4 address of those in IPv6 clothing.
    static func isPublic(_ address: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            let value = UInt32(bigEndian: v4.s_addr)
            return isPublic(v4: value)
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, address, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            let value = bytes[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            return isPublic(v4: value)
        }
        if bytes.allSatisfy({ $0 == 0 }) { return false }  // ::
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return false }  // ::1
        if bytes[0] & 0xfe == 0xfc { return false }  // fc00::/7
        if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 { return false }  // fe80::/10
        if bytes[0] == 0xff { return false }  // multicast
        if bytes[0] == 0x20 && bytes[1] == 0x01 && bytes[2] == 0x0d && bytes[3] == 0xb8 { return false }  // documentation
        if bytes[0..<12] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] {  // NAT64
            return isPublic(v4: bytes[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        }
        return true
    }

    private static func isPublic(v4 value: UInt32) -> Bool {
        let blocked: [(UInt32, Int)] = [
            (0x0000_0000, 8), (0x0A00_0000, 8), (0x6440_0000, 10), (0x7F00_0000, 8), (0xA9FE_0000, 16), (0xAC10_0000, 12),
            (0xC000_0000, 24), (0xC000_0200, 24), (0xC0A8_0000, 16), (0xC612_0000, 15), (0xC633_6400, 24), (0xCB00_7100, 24),
            (0xE000_0000, 4), (0xF000_0000, 4),
        ]
        return !blocked.contains { network, bits in value >> (32 - bits) == network >> (32 - bits) }
    }

    /// The addresses `host` resolves to (or `host` itself when it is one), looked up on a
    /// thread of its own: the system's resolver blocks.
    static func resolve(_ host: String) async -> [String] {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: lookup(bare))
            }
            thread.name = "resolve"
            thread.start()
        }
    }

    private static func lookup(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &results) == 0, let first = results else { return [] }
        defer { freeaddrinfo(results) }
        var addresses: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !addresses.contains(text) { addresses.append(text) }
            }
            cursor = info.pointee.ai_next
        }
        return addresses
    }
}
